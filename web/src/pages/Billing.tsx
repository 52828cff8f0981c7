import { useMutation, useQuery } from "@apollo/client/react";
import { useState } from "react";
import { count, date, money } from "../format";
import type { BillingQuery, SubscriptionFieldsFragment } from "../gql/graphql";
import {
  BILLING,
  CANCEL_SUBSCRIPTION,
  CHANGE_PLAN,
  CONFIG_AND_PLANS,
  PAYMENT_HISTORY,
  RESUME_SUBSCRIPTION,
} from "../operations";
import { downloadPdf, idempotencyKey } from "../session";
import { Failure, Loading, Notice } from "./Status";
import { useAction } from "./useAction";

const PAGE_SIZE = 5;
const CURRENT = ["ACTIVE", "TRIALING", "PAST_DUE", "INCOMPLETE", "UNPAID", "PAUSED"];

export function Billing({ token }: { token: string }) {
  const { data, loading, error } = useQuery(BILLING);
  if (loading && !data) return <Loading what="your billing" />;
  if (error || !data) return <Failure error={error ?? "Your billing could not be loaded."} />;
  const viewer = data.viewer;
  const subscription = viewer.subscriptions.edges
    .map((edge) => edge.node)
    .find((node) => CURRENT.includes(node.status));
  return (
    <>
      <section aria-labelledby="subscription-heading">
        <h2 id="subscription-heading">Subscription</h2>
        <p>
          Access: <strong aria-label="Access">{viewer.access.status}</strong>
          {viewer.access.until && <> until {date(viewer.access.until)}</>}
        </p>
        {subscription ? <SubscriptionPanel subscription={subscription} /> : <p>No subscription yet.</p>}
        {viewer.paymentMethods.map((method) => (
          <p key={method.id}>
            Card: {method.brand} •••• {method.last4} {method.isDefault && "(default)"}
          </p>
        ))}
      </section>
      <section aria-labelledby="invoices-heading">
        <h2 id="invoices-heading">Invoices</h2>
        <Invoices invoices={viewer.invoices.edges.map((edge) => edge.node)} token={token} />
      </section>
      <section aria-labelledby="payments-heading">
        <h2 id="payments-heading">Payments</h2>
        <PaymentHistory />
      </section>
      <section aria-labelledby="credits-heading">
        <h2 id="credits-heading">Credits</h2>
        <p>
          Balance: <strong aria-label="Credit balance">{count(viewer.credits.balance)}</strong>
        </p>
        <table aria-label="Credit ledger">
          <thead>
            <tr>
              <th>Date</th>
              <th>Kind</th>
              <th>Amount</th>
              <th>Balance</th>
              <th>Reason</th>
            </tr>
          </thead>
          <tbody>
            {viewer.credits.entries.edges.map(({ node }) => (
              <tr key={node.id}>
                <td>{date(node.createdAt)}</td>
                <td>{node.kind}</td>
                <td>{count(node.amount)}</td>
                <td>{count(node.balanceAfter)}</td>
                <td>{node.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}

function SubscriptionPanel({ subscription }: { subscription: SubscriptionFieldsFragment }) {
  const plans = useQuery(CONFIG_AND_PLANS);
  const [changePlan] = useMutation(CHANGE_PLAN);
  const [cancel] = useMutation(CANCEL_SUBSCRIPTION);
  const [resume] = useMutation(RESUME_SUBSCRIPTION);
  const [target, setTarget] = useState("");
  const { busy, failure, notice, run } = useAction();
  const subscriptionId = subscription.id;
  const others = (plans.data?.plans ?? []).filter((plan) => plan.id !== subscription.plan.id);

  return (
    <div aria-label="Current subscription">
      <p>
        {subscription.plan.productName} ({money(subscription.plan.amount)} /{" "}
        {subscription.plan.interval.toLowerCase()}): <strong aria-label="Status">{subscription.status}</strong>
      </p>
      <p>
        {subscription.cancelAtPeriodEnd
          ? `Cancels on ${date(subscription.currentPeriodEnd)}`
          : `Renews on ${date(subscription.currentPeriodEnd)}`}
      </p>
      {subscription.cancelAtPeriodEnd ? (
        <button
          type="button"
          disabled={busy}
          onClick={() =>
            void run(
              async () => (await resume({ variables: { input: { subscriptionId } } })).data?.resumeSubscription,
              "Your subscription continues.",
            )
          }
        >
          Resume subscription
        </button>
      ) : (
        <button
          type="button"
          disabled={busy}
          onClick={() =>
            void run(
              async () =>
                (await cancel({ variables: { input: { subscriptionId, atPeriodEnd: true } } })).data
                  ?.cancelSubscription,
              "Your subscription ends at the close of this period.",
            )
          }
        >
          Cancel at period end
        </button>
      )}
      <label>
        Change plan{" "}
        <select value={target} onChange={(e) => setTarget(e.target.value)}>
          <option value="">Choose a plan</option>
          {others.map((plan) => (
            <option key={plan.id} value={plan.id}>
              {plan.productName} — {money(plan.amount)} / {plan.interval.toLowerCase()}
            </option>
          ))}
        </select>
      </label>
      <button
        type="button"
        disabled={busy || !target}
        onClick={() =>
          void run(
            async () =>
              (
                await changePlan({
                  variables: { input: { subscriptionId, planId: target, idempotencyKey: idempotencyKey() } },
                })
              ).data?.changeSubscriptionPlan,
            "Your plan was changed.",
          )
        }
      >
        Change plan
      </button>
      <Failure error={failure} />
      <Notice message={notice} />
    </div>
  );
}

type InvoiceRow = BillingQuery["viewer"]["invoices"]["edges"][number]["node"];

function Invoices({ invoices, token }: { invoices: InvoiceRow[]; token: string }) {
  const [failure, setFailure] = useState<string | null>(null);
  if (!invoices.length) return <p>No invoices yet.</p>;
  return (
    <>
      <table aria-label="Invoices">
        <thead>
          <tr>
            <th>Number</th>
            <th>Date</th>
            <th>Status</th>
            <th>Total</th>
            <th>PDF</th>
          </tr>
        </thead>
        <tbody>
          {invoices.map((invoice) => (
            <tr key={invoice.id}>
              <td>{invoice.number ?? "—"}</td>
              <td>{date(invoice.createdAt)}</td>
              <td>{invoice.status}</td>
              <td>{money(invoice.total)}</td>
              <td>
                <button
                  type="button"
                  onClick={() =>
                    downloadPdf(invoice.pdfUrl, token, `${invoice.number ?? invoice.id}.pdf`).catch(
                      (problem: Error) => setFailure(problem.message),
                    )
                  }
                >
                  Download PDF
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <Failure error={failure} />
    </>
  );
}

function PaymentHistory() {
  // Cursors of the pages seen so far: the last one is the page shown.
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const after = cursors[cursors.length - 1];
  const { data, loading, error } = useQuery(PAYMENT_HISTORY, { variables: { first: PAGE_SIZE, after } });
  if (loading && !data) return <Loading what="payments" />;
  if (error || !data) return <Failure error={error ?? "The payments could not be loaded."} />;
  const page = data.viewer.transactions;
  if (!page.totalCount) return <p>No payments yet.</p>;
  return (
    <>
      <table aria-label="Payments">
        <thead>
          <tr>
            <th>Date</th>
            <th>Status</th>
            <th>Amount</th>
            <th>Refunded</th>
            <th>Description</th>
          </tr>
        </thead>
        <tbody>
          {page.edges.map(({ node }) => (
            <tr key={node.id}>
              <td>{date(node.createdAt)}</td>
              <td>{node.status}</td>
              <td>{money(node.amount)}</td>
              <td>{node.amountRefunded.amount !== "0" ? money(node.amountRefunded) : ""}</td>
              <td>{node.failureMessage ?? node.description ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p>
        Page {cursors.length} of {Math.max(1, Math.ceil(page.totalCount / PAGE_SIZE))}{" "}
        <button type="button" disabled={cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))}>
          Previous page
        </button>{" "}
        <button
          type="button"
          disabled={!page.pageInfo.hasNextPage}
          onClick={() => setCursors([...cursors, page.pageInfo.endCursor ?? null])}
        >
          Next page
        </button>
      </p>
    </>
  );
}
