// The live job list: counts per status, filters kept in the URL query, and a row per job
// kept current by `subscription jobs`.

import { graphql } from './api.js';
import { h, replace } from './dom.js';
import * as fmt from './format.js';
import { byNewest, listFields, newer, shortId } from './jobs.js';

const PAGE_SIZE = 50;
const COUNTS_DEBOUNCE_MS = 500;

function filtersFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const status = params.get('status');
  return {
    status: fmt.STATUSES.includes(status) ? status : null,
    operation: params.get('operation') || null,
  };
}

function writeFilters(filters) {
  const params = new URLSearchParams();
  if (filters.status) params.set('status', filters.status);
  if (filters.operation) params.set('operation', filters.operation);
  const query = params.toString();
  window.history.replaceState(null, '', '/dashboard' + (query ? '?' + query : ''));
}

function countsQuery() {
  const aliases = fmt.STATUSES.map(
    (status) => `${status}: jobs(status: [${status}], operation: $operation, first: 1) { totalCount }`
  );
  return `query Counts($operation: String) { ${aliases.join(' ')} }`;
}

/** Show the list in `root`; returns a function that stops following it. */
export function showList(root, { session, live, navigate, report }) {
  let filters = filtersFromUrl();
  let jobs = new Map();
  let counts = null;
  let countsTimer = null;
  const listQuery = `query Jobs($status: [JobStatus!], $operation: String, $first: Int) {
    jobs(status: $status, operation: $operation, first: $first) {
      totalCount edges { node { ${listFields(session)} } } } }`;

  const countsBar = h('nav', { class: 'counts', 'aria-label': 'Jobs by status' });
  const statusSelect = h(
    'select',
    { id: 'filter-status', name: 'status' },
    h('option', { value: '' }, 'Any status'),
    fmt.STATUSES.map((s) => h('option', { value: s }, fmt.statusLabel(s)))
  );
  const operationSelect = h(
    'select',
    { id: 'filter-operation', name: 'operation' },
    h('option', { value: '' }, 'Any operation'),
    session.operations.map((name) => h('option', { value: name }, name))
  );
  const rows = h('div', { class: 'job-rows', role: 'list' });
  const empty = h('p', { class: 'empty', hidden: true }, 'No jobs match these filters.');
  const columns = h(
    'div',
    { class: 'job-row job-head', 'aria-hidden': 'true' },
    h('span', {}, 'Operation'),
    h('span', {}, 'Status'),
    h('span', {}, 'Progress'),
    h('span', {}, 'Speed'),
    h('span', {}, 'ETA'),
    session.hasCreatedBy ? h('span', {}, 'Created by') : null,
    h('span', {}, 'Age')
  );

  replace(
    root,
    h(
      'section',
      { class: 'list-view' },
      h(
        'div',
        { class: 'list-header' },
        h('h1', {}, 'Jobs'),
        h(
          'div',
          { class: 'filters' },
          h('label', { class: 'visually-hidden', for: 'filter-status' }, 'Status'),
          statusSelect,
          h('label', { class: 'visually-hidden', for: 'filter-operation' }, 'Operation'),
          operationSelect
        )
      ),
      countsBar,
      h('div', { class: 'job-table' + (session.hasCreatedBy ? ' with-created-by' : '') }, columns, rows),
      empty
    )
  );

  function setFilters(next) {
    filters = { ...filters, ...next };
    writeFilters(filters);
    syncControls();
    refresh();
  }

  function syncControls() {
    statusSelect.value = filters.status || '';
    operationSelect.value = filters.operation || '';
  }

  statusSelect.addEventListener('change', () => setFilters({ status: statusSelect.value || null }));
  operationSelect.addEventListener('change', () =>
    setFilters({ operation: operationSelect.value || null })
  );

  function matches(job) {
    return (
      (!filters.status || job.status === filters.status) &&
      (!filters.operation || job.operation === filters.operation)
    );
  }

  function renderCounts() {
    const total = counts ? fmt.STATUSES.reduce((sum, s) => sum + counts[s], 0) : null;
    const chip = (status, label, n) =>
      h(
        'button',
        {
          type: 'button',
          class: 'count ' + (status ? fmt.statusClass(status) : 'status-all'),
          'aria-pressed': String((filters.status || null) === status),
          dataset: { status: status || 'ALL' },
          onclick: () => setFilters({ status }),
        },
        h('span', { class: 'dot' }),
        h('span', { class: 'count-label' }, label),
        h('span', { class: 'count-n' }, n === null ? '…' : fmt.count(n))
      );
    replace(
      countsBar,
      chip(null, 'All', total),
      fmt.STATUSES.map((s) => chip(s, fmt.statusLabel(s), counts ? counts[s] : null))
    );
  }

  function renderRow(job) {
    const pct = fmt.percent(job);
    const progress = h('progress', {
      class: fmt.statusClass(job.status),
      max: job.total || 1,
      value: job.total ? job.processed : fmt.TERMINAL.has(job.status) ? 1 : 0,
      'aria-label': 'Progress',
    });
    const eta =
      job.status === 'RUNNING' ? fmt.duration(job.etaSeconds) : job.status === 'QUEUED' && job.queuePosition ? '#' + job.queuePosition + ' in line' : '—';
    return h(
      'a',
      {
        class: 'job-row',
        role: 'listitem',
        href: '/dashboard/jobs/' + encodeURIComponent(job.id),
        dataset: { jobId: job.id, status: job.status },
        onclick: (event) => navigate(event, '/dashboard/jobs/' + encodeURIComponent(job.id)),
      },
      h(
        'span',
        { class: 'cell-operation' },
        h('strong', {}, job.operation),
        h('span', { class: 'muted job-id', title: job.id }, ' ' + shortId(job.id))
      ),
      h(
        'span',
        { class: 'cell-status' },
        h('span', { class: 'badge ' + fmt.statusClass(job.status) }, fmt.statusLabel(job.status))
      ),
      h(
        'span',
        { class: 'cell-progress' },
        progress,
        h(
          'span',
          { class: 'progress-text' },
          fmt.count(job.processed) + ' / ' + fmt.count(job.total) + ' · ' + pct + '%'
        )
      ),
      h('span', { class: 'cell-speed', 'data-label': 'Speed' }, fmt.rate(job.itemsPerSecond)),
      h('span', { class: 'cell-eta', 'data-label': job.status === 'RUNNING' ? 'ETA' : '' }, eta),
      session.hasCreatedBy ? h('span', { class: 'cell-by' }, job.createdBy || '—') : null,
      h(
        'time',
        { class: 'cell-age', datetime: job.createdAt, title: fmt.dateTime(job.createdAt) },
        fmt.age(job.createdAt)
      )
    );
  }

  function render() {
    const shown = [...jobs.values()].filter(matches).sort(byNewest).slice(0, PAGE_SIZE);
    replace(rows, shown.map(renderRow));
    empty.hidden = shown.length > 0;
  }

  async function loadCounts() {
    try {
      const data = await graphql(session.token, countsQuery(), { operation: filters.operation });
      counts = Object.fromEntries(fmt.STATUSES.map((s) => [s, data[s].totalCount]));
      renderCounts();
    } catch (error) {
      report(error);
    }
  }

  function countsChanged() {
    clearTimeout(countsTimer);
    countsTimer = setTimeout(loadCounts, COUNTS_DEBOUNCE_MS);
  }

  async function refresh() {
    renderCounts();
    loadCounts();
    try {
      const data = await graphql(session.token, listQuery, {
        status: filters.status ? [filters.status] : null,
        operation: filters.operation,
        first: PAGE_SIZE,
      });
      const fresh = new Map();
      for (const { node } of data.jobs.edges) fresh.set(node.id, newer(jobs.get(node.id), node));
      // Jobs the subscription brought in while the query ran are kept.
      for (const [id, job] of jobs) if (!fresh.has(id) && matches(job)) fresh.set(id, job);
      jobs = fresh;
      render();
    } catch (error) {
      report(error);
    }
  }

  const stopFollowing = live.subscribe(
    `subscription Jobs { jobs { ${listFields(session)} } }`,
    {},
    {
      next: (data) => {
        const incoming = data.jobs;
        const known = jobs.get(incoming.id);
        if (!known || known.status !== incoming.status) countsChanged();
        jobs.set(incoming.id, newer(known, incoming));
        render();
      },
      restarted: refresh,
      error: report,
    }
  );
  // Ages ("2 min ago") move on by themselves.
  const ticker = setInterval(render, 15000);

  syncControls();
  refresh();
  return {
    refresh,
    stop: () => {
      stopFollowing();
      clearInterval(ticker);
      clearTimeout(countsTimer);
    },
  };
}
