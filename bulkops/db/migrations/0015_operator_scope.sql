-- Operators: tokens that may read what every tenant shares (the queue, the workers).
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scope_check;
ALTER TABLE api_tokens
  ADD CONSTRAINT api_tokens_scope_check CHECK (scope IN ('read', 'write', 'admin', 'operator'));
