import { useMutation, useQuery, useSubscription } from "@apollo/client/react";
import { useState } from "react";
import { date, dateTime, money, percent } from "../format";
import type { MoneyFieldsFragment, WebhookEventStatus } from "../gql/graphql";
import { ADMIN_OVERVIEW, ADMIN_WEBHOOK_EVENTS, REPLAY_WEBHOOK_EVENT } from "../operations";
import { Failure, Loading, Notice } from "./Status";
import { useAction } from "./useAction";

const STATUSES: WebhookEventStatus[] = ["PENDING", "PROCESSED", "FAILED", "SKIPPED"];

function amounts(values: MoneyFieldsFragment[]): string {
  return values.length ? values.map(money).join(", ") : money({ amount: "0", currency: "USD", decimal: "0" });
}

export function Admin() {
  const [search, setSearch] = useState("");
  const [status, setStatus] = useState<WebhookEventStatus | "">("");
  const variables = { search: search || null, status: status ? [status] : null };
  const { data, loading, error, refetch } = useQuery(ADMIN_OVERVIEW, { variables });
  // Each event as it is received and settles; a new one is listed by re-reading.
  useSubscription(ADMIN_WEBHOOK_EVENTS, { onData: () => void refetch() });
  const [replay] = useMutation(REPLAY_WEBHOOK_EVENT);
  const { failure, notice, run } = useAction();

  if (loading && !data) return <Loading what="the admin overview" />;
  if (error || !data) return <Failure error={error ?? "The admin overview could not be loaded."} />;
  const { metrics, customers, webhookEvents } = data.admin;

  const replayEvent = (eventId: string) =>
    run(
      async () => (await replay({ variables: { input: { eventId } } })).data?.replayWebhookEvent,
      (payload) => `${payload.event?.stripeEventId} replayed: ${payload.event?.status}`,
    );

  return (
    <>
      <section aria-labelledby="metrics-heading">
        <h2 id="metrics-heading">Metrics</h2>
        <dl className="metrics">
          <dt>MRR</dt>
          <dd aria-label="MRR">{amounts(metrics.mrr)}</dd>
          <dt>ARR</dt>
          <dd aria-label="ARR">{amounts(metrics.arr)}</dd>
          <dt>Churn (30 days)</dt>
          <dd aria-label="Churn">{percent(metrics.churnRate30d)}</dd>
          <dt>Payment success (30 days)</dt>
          <dd aria-label="Payment success">{percent(metrics.paymentSuccessRate30d)}</dd>
          <dt>Active / trialing / past due</dt>
          <dd>
            {metrics.activeSubscriptions} / {metrics.trialingSubscriptions} / {metrics.pastDueSubscriptions}
          </dd>
        </dl>
      </section>
      <section aria-labelledby="customers-heading">
        <h2 id="customers-heading">Customers ({customers.totalCount})</h2>
        <label>
          Search <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
        </label>
        <table aria-label="Customers">
          <thead>
            <tr>
              <th>User</th>
              <th>Email</th>
              <th>Since</th>
            </tr>
          </thead>
          <tbody>
            {customers.edges.map(({ node }) => (
              <tr key={node.id}>
                <td>{node.userId}</td>
                <td>{node.email ?? "—"}</td>
                <td>{date(node.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section aria-labelledby="events-heading">
        <h2 id="events-heading">Webhook events ({webhookEvents.totalCount})</h2>
        <label>
          Status{" "}
          <select value={status} onChange={(e) => setStatus(e.target.value as WebhookEventStatus | "")}>
            <option value="">All</option>
            {STATUSES.map((value) => (
              <option key={value}>{value}</option>
            ))}
          </select>
        </label>
        <table aria-label="Webhook events">
          <thead>
            <tr>
              <th>Event</th>
              <th>Type</th>
              <th>Status</th>
              <th>Attempts</th>
              <th>Received</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {webhookEvents.edges.map(({ node }) => (
              <tr key={node.id}>
                <td>{node.stripeEventId}</td>
                <td>{node.type}</td>
                <td title={node.lastError ?? undefined}>{node.status}</td>
                <td>{node.attempts}</td>
                <td>{dateTime(node.receivedAt)}</td>
                <td>
                  <button
                    type="button"
                    aria-label={`Replay ${node.stripeEventId}`}
                    onClick={() => void replayEvent(node.id)}
                  >
                    Replay
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <Failure error={failure} />
        <Notice message={notice} />
      </section>
    </>
  );
}
