// The reference graphql-ws client (what Apollo, urql and Relay use) subscribing to
// billingUpdates, signed in through connection_init. Usage: subscribe.mjs URL TOKEN COUNT
// [DEADLINE_SECONDS]. Prints one JSON line per event: {"ready": true} once the server has
// acknowledged the connection and the subscription is sent, {"update": ...} for each of the
// first COUNT results, then exits 0; {"closed": {code, reason}} (exit 1) if the server closes
// the socket, {"deadline": n} (exit 2) if COUNT results have not come by then.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, count, deadlineSeconds = '60'] = process.argv.slice(2);
const query = `subscription {
  billingUpdates {
    kind occurredAt creditBalance
    subscription { id status }
    paymentMethod { id }
    invoice { id }
    transaction { id }
  }
}`;

const print = (line) => console.log(JSON.stringify(line));
// Node 20 has no global WebSocket: the `ws` package is what Node applications pass.
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
  retryAttempts: 0,
  lazy: false,
  // The failure is printed below, from the iteration; not also dumped on stderr.
  onNonLazyError: () => {},
  // The client sends `subscribe` as soon as the acknowledgement comes.
  on: { connected: () => setImmediate(() => print({ ready: true })) },
});
setTimeout(() => {
  print({ deadline: Number(deadlineSeconds) });
  process.exit(2);
}, Number(deadlineSeconds) * 1000).unref();

let received = 0;
try {
  for await (const result of client.iterate({ query })) {
    print({ update: result });
    if (++received >= Number(count)) break;
  }
  await client.dispose();
  process.exit(0);
} catch (error) {
  // A CloseEvent from the socket, or an Error (e.g. the connection refused).
  print({ closed: { code: error.code ?? null, reason: error.reason ?? String(error.message ?? error) } });
  process.exit(1);
}
