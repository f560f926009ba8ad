"""GraphQL documents the API tests send."""

from __future__ import annotations

SUMMARY_FIELDS = """
  __typename
  ... on BulkSummary { matched succeeded failed skipped dryRun
                       errors { itemId code message } sample { id sku } }
  ... on JobQueued { job { id status total version } }
  ... on Rejected { code message field }
"""

DELETE = f"""
mutation($selection: ProductSelection!, $options: BulkOptions) {{
  deleteProducts(selection: $selection, options: $options) {{
    {SUMMARY_FIELDS}
    ... on DeleteProductsSummary {{ deletedImages removedFromDatasets }}
  }}
}}"""

SET_STATUS = f"""
mutation($selection: ProductSelection!, $status: ProductStatus!, $options: BulkOptions) {{
  setProductStatus(selection: $selection, status: $status, options: $options) {{ {SUMMARY_FIELDS} }}
}}"""

ADD_TO_DATASET = f"""
mutation($datasetId: ID!, $selection: ProductSelection!, $options: BulkOptions) {{
  addProductsToDataset(datasetId: $datasetId, selection: $selection, options: $options) {{
    {SUMMARY_FIELDS} }}
}}"""

REMOVE_FROM_DATASET = f"""
mutation($datasetId: ID!, $selection: ProductSelection!, $options: BulkOptions) {{
  removeProductsFromDataset(datasetId: $datasetId, selection: $selection, options: $options) {{
    {SUMMARY_FIELDS} }}
}}"""

JOB = """
query($id: ID!) {
  job(id: $id) {
    id operation status version total processed succeeded failed skipped progress
    currentStep result recentErrors { itemId code message }
    errors(first: 100) { totalCount edges { node { itemId code message } } }
  }
}"""

CANCEL = """
mutation($id: ID!) {
  cancelJob(id: $id) {
    __typename
    ... on Job { id status }
    ... on Rejected { code message field }
  }
}"""

JOB_SUBSCRIPTION = """
subscription($id: ID!) {
  job(id: $id) { id status version processed total succeeded failed progress }
}"""
