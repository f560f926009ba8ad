-- Who is calling: a token's scope and name, and who created each job.
-- Tokens made before scopes existed could do everything, so they keep doing it.
ALTER TABLE api_tokens
  ADD COLUMN scope text NOT NULL DEFAULT 'admin' CHECK (scope IN ('read', 'write', 'admin'));
UPDATE api_tokens SET name = 'token ' || left(encode(token_hash, 'hex'), 8) WHERE name IS NULL;
ALTER TABLE api_tokens ALTER COLUMN name SET NOT NULL;

-- A token's name, or a signed-in user's subject; NULL for jobs made before it was kept.
ALTER TABLE jobs ADD COLUMN created_by text;

-- The application role still cannot read tokens or tenants: it asks about one token hash,
-- or one tenant name (a JWT names its tenant).
CREATE FUNCTION authenticate_caller(p_hash bytea)
  RETURNS TABLE (tenant_id uuid, tenant_name text, token_name text, scope text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$
    SELECT t.tenant_id, n.name, t.name, t.scope
    FROM api_tokens t JOIN tenants n ON n.id = t.tenant_id
    WHERE t.token_hash = p_hash AND t.revoked_at IS NULL
  $$;

CREATE FUNCTION tenant_named(p_name text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT id FROM tenants WHERE name = p_name $$;

REVOKE ALL ON FUNCTION authenticate_caller(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authenticate_caller(bytea) TO bulkops_app;
REVOKE ALL ON FUNCTION tenant_named(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_named(text) TO bulkops_app;
