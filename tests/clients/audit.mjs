// The GraphQL-over-HTTP audit of graphql-http (auditServer) against a running gateway. Prints
// one JSON object: `results`, every audit's id, name (led by its level: MUST, SHOULD, MAY),
// status (ok, notice, warn, error) and reason; `responses`, the method and status of every
// response the audit received, so that a 5xx is seen even where an audit passes.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
const responses = [];

async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  responses.push({ method: init?.method ?? 'GET', url: String(input), status: response.status });
  return response;
}

const results = await auditServer({ url, fetchFn: recordingFetch });
console.log(
  JSON.stringify({
    results: results.map(({ id, name, status, reason }) => ({ id, name, status, reason: reason ?? null })),
    responses,
  }),
);
