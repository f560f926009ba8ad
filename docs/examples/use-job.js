// React: a job's live state, and a button running a bulk mutation that shows its summary
// or follows its job. No JSX, so this file runs as it is.
import { createElement as h, useEffect, useState } from 'react';
import { TERMINAL, readBulkResult, watchJob } from './bulkops-client.js';

/** `{job, error, finished}` for job `id`, kept current until the job ends. */
export function useJob(client, id) {
  const [state, setState] = useState({ job: null, error: null, finished: false });
  useEffect(() => {
    if (!id) return undefined;
    setState({ job: null, error: null, finished: false });
    const watch = watchJob(client, id, (job) =>
      setState({ job, error: null, finished: TERMINAL.includes(job.status) })
    );
    watch.done.catch((error) => setState((state) => ({ ...state, error })));
    return watch.stop;
  }, [client, id]);
  return state;
}

export function JobProgress({ client, id }) {
  const { job, error, finished } = useJob(client, id);
  if (error) return h('p', { role: 'alert' }, error.message);
  if (!job) return h('p', null, 'Waiting for the job…');
  return h(
    'div',
    { className: 'job', 'data-status': job.status },
    h('progress', { max: job.total || 1, value: job.processed }),
    h('p', null, `${job.status}: ${job.processed} of ${job.total}`),
    finished ? h('p', null, `${job.succeeded} changed, ${job.failed} failed`) : null
  );
}

const ARCHIVE = `mutation($selection: ProductSelection!, $options: BulkOptions) {
  setProductStatus(selection: $selection, status: ARCHIVED, options: $options) {
    __typename
    ... on SetProductStatusSummary { succeeded failed skipped }
    ... on JobQueued { job { id } }
    ... on Rejected { code message field }
  }
}`;

/** Archive the selected products: a summary at once, or a job's progress to its end. */
export function ArchiveButton({ client, selection, options }) {
  const [outcome, setOutcome] = useState(null);
  const run = async () => {
    const data = await client.request(ARCHIVE, { selection, options });
    setOutcome(readBulkResult(data.setProductStatus));
  };
  if (!outcome) return h('button', { onClick: run }, 'Archive');
  if (outcome.kind === 'rejected') return h('p', { role: 'alert' }, outcome.message);
  if (outcome.kind === 'done') return h('p', null, `${outcome.summary.succeeded} archived`);
  return h(JobProgress, { client, id: outcome.job.id });
}
