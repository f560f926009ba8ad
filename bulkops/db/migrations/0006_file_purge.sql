-- Which tenants have stored files waiting to be removed: the periodic sweep asks this
-- across tenants, as an owner-defined function, so the application role still reads no
-- other tenant's rows.
CREATE INDEX file_deletions_tenant_idx ON file_deletions (tenant_id, id);

CREATE FUNCTION tenants_with_file_deletions() RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT DISTINCT tenant_id FROM file_deletions $$;

REVOKE ALL ON FUNCTION tenants_with_file_deletions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants_with_file_deletions() TO bulkops_app;
