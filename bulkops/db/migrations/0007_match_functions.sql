-- matchProducts' fuzzy rule and its candidates as two functions, replacing
-- match_similar_names (0005): its boolean parameter (brand or any brand) kept the brand index
-- out of the plan once PostgreSQL cached a generic plan for it, and the fuzzy rule, nearly
-- all of a match job's time, took about 1.6 times as long. See 0005 for why these are
-- functions of the table owner.

DROP FUNCTION match_similar_names(uuid, int[], real, int, boolean);

-- FUZZY_NAME: the product of the row's brand whose name is the most similar (trigram
-- similarity, at least p_min); the lowest id among equals. No parameter changes the plan's
-- shape: a generic plan (SQL functions' plans are cached) keeps the brand index in it.
CREATE FUNCTION match_fuzzy_name(p_input uuid, p_rows int[], p_min real)
  RETURNS TABLE (row_number int, product_id bigint, score real)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$
    -- `%` (which the trigram index serves) compares with this setting.
    SELECT set_config('pg_trgm.similarity_threshold', p_min::text, true);
    SELECT r.row_number, hit.id, hit.score
    FROM match_rows r
    CROSS JOIN LATERAL (
      SELECT p.id, similarity(p.name, r.name) AS score
      FROM products p
      WHERE p.tenant_id = r.tenant_id AND p.name % r.name
        AND match_norm(p.brand) = r.brand_key
      ORDER BY score DESC, p.id
      LIMIT 1) hit
    WHERE r.input_id = p_input AND r.row_number = ANY(p_rows)
      AND r.tenant_id = current_tenant_id() AND r.name_key <> '' AND r.brand_key <> ''
      AND hit.score >= p_min
  $$;

-- Candidates for unmatched rows: up to p_limit products whose names are at least p_min
-- similar, best first (then the lowest id), within the row's brand or, for a row without
-- one, among all products.
CREATE FUNCTION match_name_candidates(p_input uuid, p_rows int[], p_min real, p_limit int)
  RETURNS TABLE (row_number int, product_id bigint, score real)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$
    SELECT set_config('pg_trgm.similarity_threshold', p_min::text, true);
    SELECT r.row_number, hit.id, hit.score
    FROM match_rows r
    CROSS JOIN LATERAL (
      SELECT p.id, similarity(p.name, r.name) AS score
      FROM products p
      WHERE p.tenant_id = r.tenant_id AND p.name % r.name
        AND (r.brand_key = '' OR match_norm(p.brand) = r.brand_key)
      ORDER BY score DESC, p.id
      LIMIT p_limit) hit
    WHERE r.input_id = p_input AND r.row_number = ANY(p_rows)
      AND r.tenant_id = current_tenant_id() AND r.name_key <> ''
      AND hit.score >= p_min
    ORDER BY r.row_number, hit.score DESC, hit.id
  $$;

REVOKE ALL ON FUNCTION match_fuzzy_name(uuid, int[], real) FROM PUBLIC;
REVOKE ALL ON FUNCTION match_name_candidates(uuid, int[], real, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION match_fuzzy_name(uuid, int[], real) TO bulkops_app;
GRANT EXECUTE ON FUNCTION match_name_candidates(uuid, int[], real, int) TO bulkops_app;
