-- Tenants, tokens, the catalog, jobs and their per-item outcomes.
-- Every tenant table carries tenant_id and a row-level security policy keyed on the
-- transaction setting bulkops.tenant_id; the API and workers act as bulkops_app,
-- which does not own the tables and cannot bypass the policies.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bulkops_app') THEN
    CREATE ROLE bulkops_app NOLOGIN NOBYPASSRLS;
  END IF;
  EXECUTE format('GRANT bulkops_app TO %I', current_user);
END
$$;

CREATE FUNCTION current_tenant_id() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT NULLIF(current_setting('bulkops.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  token_hash bytea NOT NULL UNIQUE,
  name text,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

-- The application role cannot read tokens; it can only ask whose a token hash is.
CREATE FUNCTION authenticate_token(p_hash bytea) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT tenant_id FROM api_tokens WHERE token_hash = p_hash AND revoked_at IS NULL $$;

CREATE TABLE products (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  sku text NOT NULL,
  barcode text,
  name text NOT NULL,
  brand text,
  category text,
  status text NOT NULL DEFAULT 'DRAFT' CHECK (status IN ('DRAFT', 'ACTIVE', 'ARCHIVED')),
  price numeric(12, 2) CHECK (price >= 0),
  attributes jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, sku)
);
CREATE INDEX products_tenant_id_idx ON products (tenant_id, id);
CREATE INDEX products_tenant_status_idx ON products (tenant_id, status, id);
CREATE INDEX products_tenant_brand_idx ON products (tenant_id, brand, id);
CREATE INDEX products_tenant_category_idx ON products (tenant_id, category, id);
CREATE INDEX products_tenant_barcode_idx ON products (tenant_id, barcode) WHERE barcode IS NOT NULL;
CREATE INDEX products_tenant_created_idx ON products (tenant_id, created_at);

CREATE TABLE product_identifiers (
  product_id bigint NOT NULL REFERENCES products ON DELETE CASCADE,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  kind text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (product_id, kind)
);
CREATE INDEX product_identifiers_lookup_idx ON product_identifiers (tenant_id, kind, value);

CREATE TABLE product_images (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  product_id bigint NOT NULL REFERENCES products ON DELETE CASCADE,
  storage_key text NOT NULL,
  content_type text NOT NULL DEFAULT 'image/svg+xml',
  position int NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX product_images_product_idx ON product_images (product_id);

CREATE TABLE datasets (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, name)
);

CREATE TABLE dataset_products (
  dataset_id bigint NOT NULL REFERENCES datasets ON DELETE CASCADE,
  product_id bigint NOT NULL REFERENCES products ON DELETE CASCADE,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  added_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (dataset_id, product_id)
);
CREATE INDEX dataset_products_product_idx ON dataset_products (product_id);

-- Stored files whose rows are gone; removed from storage after the deleting batch commits,
-- so a crash between the two leaves work to finish, never a lost or half-applied batch.
CREATE TABLE file_deletions (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  storage_key text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- The operation name is checked against the registry in code, never by a CHECK list here.
CREATE TABLE jobs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  operation text NOT NULL,
  status text NOT NULL DEFAULT 'QUEUED' CHECK (status IN
    ('QUEUED', 'RUNNING', 'PAUSED', 'CANCELLING', 'CANCELLED', 'SUCCEEDED', 'PARTIAL', 'FAILED')),
  priority text NOT NULL DEFAULT 'NORMAL' CHECK (priority IN ('HIGH', 'NORMAL', 'LOW')),
  error_policy text NOT NULL DEFAULT 'CONTINUE' CHECK (error_policy IN ('CONTINUE', 'ABORT')),
  params jsonb NOT NULL DEFAULT '{}',
  selection jsonb NOT NULL,
  total bigint NOT NULL DEFAULT 0,
  processed bigint NOT NULL DEFAULT 0,
  succeeded bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0,
  skipped bigint NOT NULL DEFAULT 0,
  counters jsonb NOT NULL DEFAULT '{}',
  cursor bigint NOT NULL DEFAULT 0,
  version int NOT NULL DEFAULT 1,
  slices int NOT NULL DEFAULT 0,
  current_step text,
  recent_errors jsonb NOT NULL DEFAULT '[]',
  result jsonb,
  parent_id uuid REFERENCES jobs ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX jobs_tenant_created_idx ON jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX jobs_unfinished_idx ON jobs (status)
  WHERE status IN ('QUEUED', 'RUNNING', 'CANCELLING');

-- The explicit ids a background job was given, in key order.
CREATE TABLE job_items (
  job_id uuid NOT NULL REFERENCES jobs ON DELETE CASCADE,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  item_id bigint NOT NULL,
  PRIMARY KEY (job_id, item_id)
);

CREATE TABLE job_errors (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs ON DELETE CASCADE,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  item_id bigint,
  row_number int,
  code text NOT NULL,
  message text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_errors_job_idx ON job_errors (job_id, id);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['products', 'product_identifiers', 'product_images', 'datasets',
                           'dataset_products', 'file_deletions', 'jobs', 'job_items', 'job_errors']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) '
      'WITH CHECK (tenant_id = current_tenant_id())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO bulkops_app', t);
  END LOOP;
END
$$;

GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO bulkops_app;
GRANT EXECUTE ON FUNCTION current_tenant_id() TO bulkops_app;
REVOKE ALL ON FUNCTION authenticate_token(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authenticate_token(bytea) TO bulkops_app;
