// One job's page: live counters through `subscription job`, its errors, files, related
// jobs, and the actions a writer may take.

import { download, graphql } from './api.js';
import { h, replace } from './dom.js';
import * as fmt from './format.js';
import { detailFields, isTerminal, newer, shortId } from './jobs.js';

const ERRORS_PAGE = 25;

const ON_JOB = '__typename ... on Job { id status } ... on Rejected { code message }';
const ON_QUEUED = '__typename ... on JobQueued { job { id } } ... on Rejected { code message }';

const ACTIONS = [
  {
    name: 'pause',
    label: 'Pause',
    done: 'Pausing after the current batch.',
    when: (job) => job.status === 'QUEUED' || job.status === 'RUNNING',
    confirm: 'Pause this job after its current batch?',
    mutation: `mutation Pause($id: ID!) { result: pauseJob(id: $id) { ${ON_JOB} } }`,
  },
  {
    name: 'resume',
    label: 'Resume',
    done: 'Resumed: the job is queued again.',
    when: (job) => job.status === 'PAUSED',
    confirm: 'Resume this job from where it stopped?',
    mutation: `mutation Resume($id: ID!) { result: resumeJob(id: $id) { ${ON_JOB} } }`,
  },
  {
    name: 'retry',
    label: 'Retry failed items',
    when: (job) => isTerminal(job) && job.failed > 0,
    confirm: 'Start a new job over the items that failed?',
    mutation: `mutation Retry($id: ID!) {
      result: retryJob(id: $id, scope: FAILED_ITEMS) { ${ON_QUEUED} } }`,
  },
  {
    name: 'cancel',
    label: 'Cancel',
    done: 'Cancelled (a running job stops after its current batch).',
    danger: true,
    when: (job) => ['QUEUED', 'RUNNING', 'PAUSED'].includes(job.status),
    confirm: 'Cancel this job? What it has done so far stays done.',
    mutation: `mutation Cancel($id: ID!) { result: cancelJob(id: $id) { ${ON_JOB} } }`,
  },
];

/** Show job `id` in `root`; returns a function that stops following it. */
export function showJob(root, id, { session, live, navigate, report, notify }) {
  let job = null;
  let errorsAfter = [null];
  const summary = h('div', { class: 'job-summary' }, h('p', { class: 'muted' }, 'Loading…'));
  const actions = h('div', { class: 'actions', role: 'group', 'aria-label': 'Job actions' });
  const files = h('div', { class: 'files' });
  const related = h('div', { class: 'related' });
  const recent = h('div', { class: 'recent-errors' });
  const errorsTable = h('div', { class: 'error-list' });

  const link = (path, text) =>
    h('a', { href: path, onclick: (event) => navigate(event, path) }, text);

  replace(
    root,
    h(
      'section',
      { class: 'job-view' },
      h('p', { class: 'crumbs' }, link('/dashboard', '← All jobs')),
      summary,
      actions,
      h('div', { class: 'panels' }, h('section', { class: 'panel' }, h('h2', {}, 'Files'), files),
        h('section', { class: 'panel' }, h('h2', {}, 'Related jobs'), related)),
      h('section', { class: 'panel' }, h('h2', {}, 'Recent errors'), recent),
      h('section', { class: 'panel' }, h('h2', {}, 'All errors'), errorsTable)
    )
  );

  function stat(label, value, extra) {
    return h('div', { class: 'stat ' + (extra || '') }, h('dt', {}, label), h('dd', {}, value));
  }

  function renderSummary() {
    const pct = fmt.percent(job);
    const running = job.status === 'RUNNING';
    replace(
      summary,
      h(
        'div',
        { class: 'job-title' },
        h('div', {}, h('h1', {}, job.operation), h('p', { class: 'job-id muted' }, 'Job ' + job.id)),
        h('span', { class: 'badge badge-large ' + fmt.statusClass(job.status), id: 'job-status' }, fmt.statusLabel(job.status))
      ),
      h(
        'div',
        { class: 'big-progress' },
        h('progress', {
          id: 'job-progress',
          class: fmt.statusClass(job.status),
          max: job.total || 1,
          value: job.total ? job.processed : isTerminal(job) ? 1 : 0,
          'aria-label': 'Progress',
        }),
        h(
          'p',
          { class: 'progress-line' },
          h('strong', { class: 'pct' }, pct + '%'),
          ' ' + fmt.count(job.processed) + ' of ' + fmt.count(job.total) + ' items',
          running ? ' · ' + fmt.rate(job.itemsPerSecond) + ' · ' + fmt.duration(job.etaSeconds) + ' left' : '',
          job.status === 'QUEUED' && job.queuePosition ? ' · #' + job.queuePosition + ' in line' : '',
          running && job.currentStep ? h('span', { class: 'muted' }, ' · ' + job.currentStep) : ''
        ),
        job.waitingReason ? h('p', { class: 'muted', id: 'job-waiting' }, 'Waiting: ' + job.waitingReason) : null
      ),
      h(
        'dl',
        { class: 'stats' },
        stat('Succeeded', fmt.count(job.succeeded), 'stat-succeeded'),
        stat('Failed', fmt.count(job.failed), job.failed ? 'stat-failed' : ''),
        stat('Skipped', fmt.count(job.skipped)),
        stat('Processed', fmt.count(job.processed)),
        stat('Total', fmt.count(job.total))
      ),
      h(
        'dl',
        { class: 'facts' },
        stat('Created', fmt.dateTime(job.createdAt) + ' (' + fmt.age(job.createdAt) + ')'),
        stat('Started', fmt.dateTime(job.startedAt)),
        stat('Finished', fmt.dateTime(job.finishedAt)),
        job.startedAt
          ? stat('Took', fmt.duration(((job.finishedAt ? Date.parse(job.finishedAt) : Date.now()) - Date.parse(job.startedAt)) / 1000))
          : null,
        stat('Priority', job.priority),
        job.usage ? stat('Calls', fmt.count(job.usage.calls) + (job.usage.retries ? ' (' + fmt.count(job.usage.retries) + ' retries, ' + fmt.count(job.usage.rateLimited) + ' rate limited)' : '')) : null,
        job.usage && (job.usage.tokensIn || job.usage.tokensOut)
          ? stat('Tokens', fmt.count(job.usage.tokensIn) + ' in · ' + fmt.count(job.usage.tokensOut) + ' out')
          : null,
        job.usage ? stat('Waited for rate limit', fmt.duration(job.usage.waitedSeconds)) : null,
        session.hasCreatedBy ? stat('Created by', job.createdBy || '—') : null
      )
    );
  }

  function renderActions() {
    if (!session.canWrite) {
      replace(actions);
      return;
    }
    replace(
      actions,
      ACTIONS.filter((action) => action.when(job)).map((action) =>
        h(
          'button',
          {
            type: 'button',
            class: 'button' + (action.danger ? ' button-danger' : ''),
            dataset: { action: action.name },
            onclick: (event) => act(action, event.currentTarget),
          },
          action.label
        )
      )
    );
  }

  async function act(action, button) {
    if (!window.confirm(action.confirm)) return;
    button.disabled = true;
    try {
      const data = await graphql(session.token, action.mutation, { id: job.id });
      const result = data.result;
      if (result.__typename === 'Rejected') {
        notify(result.message, 'error');
      } else if (result.__typename === 'JobQueued') {
        notify('Retry queued as job ' + shortId(result.job.id) + '.', 'ok');
        navigate(null, '/dashboard/jobs/' + encodeURIComponent(result.job.id));
      } else {
        notify(action.done, 'ok');
      }
    } catch (error) {
      report(error);
    } finally {
      button.disabled = false;
    }
  }

  function downloadButton(path, filename, label) {
    return h(
      'button',
      {
        type: 'button',
        class: 'button button-quiet',
        onclick: async (event) => {
          const button = event.currentTarget;
          button.disabled = true;
          try {
            await download(session.token, path, filename);
          } catch (error) {
            report(error);
          } finally {
            button.disabled = false;
          }
        },
      },
      label
    );
  }

  function renderFiles() {
    const id = encodeURIComponent(job.id);
    const items = [];
    if (job.resultFile) {
      const file = job.resultFile;
      items.push(
        h(
          'p',
          {},
          h('a', { class: 'button button-quiet', href: file.url, rel: 'noopener' }, 'Result file (' + file.format + ')'),
          h('span', { class: 'muted' }, ' ' + fmt.count(file.rows) + ' rows, ' + fmt.bytes(file.bytes) + ', link expires ' + fmt.dateTime(file.expiresAt))
        )
      );
    }
    if (job.operation === 'matchProducts') {
      items.push(h('p', {}, downloadButton('/jobs/' + id + '/match-results.csv', 'job-' + job.id + '-match-results.csv', 'Match results (CSV)')));
    }
    if (job.failed > 0) {
      items.push(h('p', {}, downloadButton('/jobs/' + id + '/errors.csv', 'job-' + job.id + '-errors.csv', 'Errors (CSV)')));
    }
    replace(files, items.length ? items : h('p', { class: 'muted' }, 'No files for this job.'));
  }

  function jobLink(other, relation) {
    return h(
      'li',
      {},
      h('span', { class: 'muted' }, relation + ' '),
      link('/dashboard/jobs/' + encodeURIComponent(other.id), other.operation + ' ' + shortId(other.id)),
      other.status ? h('span', { class: 'badge ' + fmt.statusClass(other.status) }, fmt.statusLabel(other.status)) : ''
    );
  }

  let children = [];
  async function loadChildren() {
    // Retries (and chained steps) point at their parent; the tenant's recent jobs say which.
    try {
      const data = await graphql(
        session.token,
        'query Recent { jobs(first: 200) { edges { node { id operation status parent { id } } } } }'
      );
      children = data.jobs.edges.map((e) => e.node).filter((n) => n.parent && n.parent.id === job.id);
      renderRelated();
    } catch (error) {
      report(error);
    }
  }

  function renderRelated() {
    const items = [];
    if (job.parent) items.push(jobLink(job.parent, 'Parent'));
    if (job.next) items.push(jobLink(job.next, 'Next step'));
    for (const child of children) {
      if (!job.next || child.id !== job.next.id) items.push(jobLink(child, 'Child'));
    }
    replace(related, items.length ? h('ul', { class: 'plain' }, items) : h('p', { class: 'muted' }, 'None.'));
  }

  function errorTable(errors) {
    return h(
      'table',
      { class: 'errors' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Item'), h('th', {}, 'Code'), h('th', {}, 'Message'))),
      h(
        'tbody',
        {},
        errors.map((e) =>
          h(
            'tr',
            {},
            h('td', {}, e.itemId ? '#' + e.itemId : e.row ? 'row ' + e.row + (e.column ? ', ' + e.column : '') : '—'),
            h('td', {}, h('code', {}, e.code)),
            h('td', {}, e.message)
          )
        )
      )
    );
  }

  function renderRecent() {
    const errors = job.recentErrors || [];
    replace(recent, errors.length ? errorTable(errors) : h('p', { class: 'muted' }, 'No errors.'));
  }

  async function loadErrors(page) {
    try {
      const data = await graphql(
        session.token,
        `query Errors($id: ID!, $first: Int, $after: String) { job(id: $id) {
          errors(first: $first, after: $after) { totalCount
            pageInfo { hasNextPage endCursor } edges { node { itemId row column code message } } } } }`,
        { id, first: ERRORS_PAGE, after: errorsAfter[page] }
      );
      if (!data.job) return;
      const connection = data.job.errors;
      errorsAfter[page + 1] = connection.pageInfo.endCursor;
      const nodes = connection.edges.map((e) => e.node);
      const first = page * ERRORS_PAGE + 1;
      replace(
        errorsTable,
        nodes.length ? errorTable(nodes) : h('p', { class: 'muted' }, 'No errors.'),
        connection.totalCount > ERRORS_PAGE
          ? h(
              'div',
              { class: 'pager' },
              h('button', { type: 'button', class: 'button button-quiet', disabled: page === 0, onclick: () => loadErrors(page - 1) }, '← Previous'),
              h('span', { class: 'muted' }, fmt.count(first) + '–' + fmt.count(first + nodes.length - 1) + ' of ' + fmt.count(connection.totalCount)),
              h('button', { type: 'button', class: 'button button-quiet', disabled: !connection.pageInfo.hasNextPage, onclick: () => loadErrors(page + 1) }, 'Next →')
            )
          : null
      );
    } catch (error) {
      report(error);
    }
  }

  function render() {
    renderSummary();
    renderActions();
    renderFiles();
    renderRelated();
    renderRecent();
  }

  let failedSeen = -1;
  const stopFollowing = live.subscribe(
    `subscription Job($id: ID!) { job(id: $id) { ${detailFields(session)} } }`,
    { id },
    {
      next: (data) => {
        const first = job === null;
        job = newer(job, data.job);
        document.title = fmt.statusLabel(job.status) + ' · ' + job.operation + ' · bulkops';
        render();
        if (first) loadChildren();
        if (job.failed !== failedSeen && (first || isTerminal(job))) {
          failedSeen = job.failed;
          errorsAfter = [null];
          loadErrors(0);
        }
      },
      complete: () => {
        loadChildren();
      },
      error: (error) => {
        replace(summary, h('p', { class: 'notice notice-error' }, 'This job cannot be shown: ' + error.message));
      },
    }
  );
  const ticker = setInterval(() => job && renderSummary(), 15000);

  return {
    stop: () => {
      stopFollowing();
      clearInterval(ticker);
    },
  };
}
