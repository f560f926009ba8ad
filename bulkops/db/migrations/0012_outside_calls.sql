-- What a job's outside calls cost (calls, retries, 429s, tokens, seconds waited for the
-- limiter), added with each batch; NULL for operations that call nothing.
ALTER TABLE jobs ADD COLUMN usage jsonb;
-- Why a running job is not progressing although it holds its work (a provider is down,
-- and when it is tried next); NULL while it is progressing and once it has ended.
ALTER TABLE jobs ADD COLUMN waiting_reason text;
