// The fields the dashboard reads of a job, and keeping a set of jobs current.

import { TERMINAL } from './format.js';

/** A job's fields for the list; `createdBy` only where the server has it. */
export function listFields(session) {
  return `id operation status version total processed succeeded failed skipped
    itemsPerSecond etaSeconds currentStep queuePosition createdAt startedAt finishedAt
    parent { id } ${session.hasCreatedBy ? 'createdBy' : ''}`;
}

/** The list's fields and what the job page shows besides. */
export function detailFields(session) {
  return `${listFields(session)} priority
    recentErrors { itemId row column code message }
    resultFile { url expiresAt rows bytes format }
    parent { id operation status }
    ${session.hasNext ? 'next { id operation status }' : ''}
    ${session.hasUsage ? 'waitingReason usage { calls retries rateLimited tokensIn tokensOut waitedSeconds }' : ''}`;
}

/** Keep the newer of two states of one job (versions rise with every change). */
export function newer(known, incoming) {
  if (!known || incoming.version >= known.version) return { ...known, ...incoming };
  return known;
}

export function isTerminal(job) {
  return TERMINAL.has(job.status);
}

/** Newest first; ties (jobs made in one instant) in a stable order. */
export function byNewest(a, b) {
  return Date.parse(b.createdAt) - Date.parse(a.createdAt) || String(b.id).localeCompare(String(a.id));
}

/** Job ids are long (UUIDs): their first characters tell jobs apart in a list. */
export function shortId(id) {
  return String(id).length > 8 ? String(id).slice(0, 8) : String(id);
}
