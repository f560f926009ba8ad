// /dashboard/webhooks: the tenant's webhook endpoints and each one's delivery log, newest
// first, with a button to send a delivery again. Needs the admin scope; polled while shown.

import { GraphQLErrors, graphql } from './api.js';
import { h, replace } from './dom.js';
import { age, dateTime } from './format.js';

const POLL_MS = 5000;
const DELIVERIES = 20;
const QUERY = `{ webhookEndpoints { id url events description enabled disabledReason createdAt
  deliveries(first: ${DELIVERIES}) { totalCount edges { node {
    id eventId event jobId attempts status lastResponseStatus lastError nextAttemptAt
    deliveredAt createdAt } } } } }`;
const REDELIVER = `mutation($id: ID!) { redeliverWebhook(deliveryId: $id) {
  __typename ... on Rejected { message } } }`;
const DELIVERY_CLASS = { PENDING: 'status-queued', DELIVERED: 'status-succeeded', FAILED: 'status-failed' };

export function showWebhooks(root, { session, navigate, report, notify }) {
  document.title = 'Webhooks · bulkops';
  const body = h('div', { class: 'webhooks' }, h('p', { class: 'muted loading' }, 'Loading…'));
  replace(
    root,
    h('nav', { class: 'crumbs' }, h('a', { href: '/dashboard', onclick: (e) => navigate(e, '/dashboard') }, 'Jobs'), ' / Webhooks'),
    h('h1', {}, 'Webhooks'),
    body
  );
  let timer = null;
  let stopped = false;

  async function redeliver(delivery) {
    try {
      const answer = (await graphql(session.token, REDELIVER, { id: delivery.id })).redeliverWebhook;
      if (answer.__typename === 'Rejected') notify(answer.message, 'error');
      else notify('Sending ' + delivery.event + ' again.', 'ok');
      await load();
    } catch (error) {
      report(error);
    }
  }

  function deliveryRow(delivery, endpoint) {
    return h(
      'tr',
      { class: 'delivery-row', dataset: { deliveryId: delivery.id, status: delivery.status } },
      h('td', {}, h('code', {}, delivery.event)),
      h(
        'td',
        {},
        delivery.jobId
          ? h('a', { href: '/dashboard/jobs/' + delivery.jobId, onclick: (e) => navigate(e, '/dashboard/jobs/' + delivery.jobId) }, delivery.jobId.slice(0, 8))
          : '—'
      ),
      h('td', {}, h('span', { class: 'badge ' + (DELIVERY_CLASS[delivery.status] || '') }, delivery.status.toLowerCase())),
      h('td', {}, String(delivery.attempts)),
      h('td', {}, delivery.lastResponseStatus === null ? '—' : String(delivery.lastResponseStatus)),
      h('td', {}, delivery.lastError || (delivery.deliveredAt ? 'delivered ' + age(delivery.deliveredAt) : '—')),
      h('td', {}, delivery.status === 'PENDING' && delivery.nextAttemptAt ? dateTime(delivery.nextAttemptAt) : '—'),
      h('td', { title: dateTime(delivery.createdAt) }, age(delivery.createdAt)),
      h(
        'td',
        {},
        session.canWrite && endpoint.enabled
          ? h('button', { type: 'button', class: 'button button-quiet', onclick: () => redeliver(delivery) }, 'Redeliver')
          : null
      )
    );
  }

  function endpointPanel(endpoint) {
    const deliveries = endpoint.deliveries.edges.map((edge) => edge.node);
    return h(
      'section',
      { class: 'panel webhook-endpoint', dataset: { endpointId: endpoint.id } },
      h(
        'h2',
        {},
        h('span', { class: 'webhook-url' }, endpoint.url),
        ' ',
        h('span', { class: 'badge ' + (endpoint.enabled ? 'status-succeeded' : 'status-failed') }, endpoint.enabled ? 'enabled' : 'disabled')
      ),
      endpoint.disabledReason ? h('p', { class: 'notice notice-error' }, endpoint.disabledReason) : null,
      h(
        'p',
        { class: 'muted' },
        endpoint.events.length ? endpoint.events.join(', ') : 'every event',
        endpoint.description ? ' · ' + endpoint.description : '',
        ' · ' + endpoint.deliveries.totalCount + (endpoint.deliveries.totalCount === 1 ? ' delivery' : ' deliveries')
      ),
      deliveries.length
        ? h(
            'table',
            { class: 'errors deliveries' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Event', 'Job', 'Status', 'Attempts', 'Answer', 'Last error', 'Next attempt', 'Created', ''].map((t) => h('th', {}, t))
              )
            ),
            h('tbody', {}, deliveries.map((d) => deliveryRow(d, endpoint)))
          )
        : h('p', { class: 'muted' }, 'No deliveries yet.')
    );
  }

  async function load() {
    try {
      const data = await graphql(session.token, QUERY);
      if (stopped) return;
      const endpoints = data.webhookEndpoints;
      replace(
        body,
        endpoints.length
          ? endpoints.map(endpointPanel)
          : h('p', { class: 'empty muted' }, 'No webhook endpoints. Create one with the createWebhookEndpoint mutation.')
      );
    } catch (error) {
      if (error instanceof GraphQLErrors && error.code === 'FORBIDDEN') {
        replace(body, h('p', { class: 'muted' }, 'Webhooks need a token with the admin scope.'));
        stop();
        return;
      }
      report(error);
    }
  }

  function stop() {
    stopped = true;
    if (timer) clearInterval(timer);
    timer = null;
  }

  load();
  timer = setInterval(load, POLL_MS);
  return { stop, refresh: load };
}
