import { useFragment, useMutation, useQuery } from "@apollo/client/react";
import { useEffect, useRef, useState } from "react";
import { money } from "../format";
import type { BillingInterval } from "../gql/graphql";
import { CONFIG_AND_PLANS, CREATE_SUBSCRIPTION, SUBSCRIPTION_FIELDS } from "../operations";
import { idempotencyKey } from "../session";
import { loadStripe, type CardElement, type StripeJs } from "../stripe";
import { Failure, Loading, Notice } from "./Status";

const INTERVALS: [BillingInterval, string][] = [
  ["MONTH", "Monthly"],
  ["YEAR", "Yearly"],
];

function useCard(config: { stripeJsUrl: string; publishableKey: string } | undefined) {
  const host = useRef<HTMLDivElement>(null);
  const [stripe, setStripe] = useState<{ js: StripeJs; card: CardElement } | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!config || !host.current) return;
    let card: CardElement | null = null;
    let cancelled = false;
    loadStripe(config.stripeJsUrl, config.publishableKey)
      .then((js) => {
        if (cancelled || !host.current) return;
        card = js.elements().create("card");
        card.mount(host.current);
        setStripe({ js, card });
      })
      .catch((failure: Error) => setError(failure.message));
    return () => {
      cancelled = true;
      card?.destroy();
    };
  }, [config?.stripeJsUrl, config?.publishableKey]);
  return { host, stripe, error };
}

function SubscriptionStatus({ id }: { id: string }) {
  const { data, complete } = useFragment({
    fragment: SUBSCRIPTION_FIELDS,
    fragmentName: "SubscriptionFields",
    from: { __typename: "Subscription", id },
  });
  if (!complete) return null;
  return (
    <p aria-label="Subscription status">
      {data.plan.productName}: <strong>{data.status}</strong>
    </p>
  );
}

export function Plans({ onSubscribed }: { onSubscribed: () => void }) {
  const { data, loading, error } = useQuery(CONFIG_AND_PLANS);
  const [interval, setBillingInterval] = useState<BillingInterval>("MONTH");
  const card = useCard(data?.billingConfig);
  const [createSubscription] = useMutation(CREATE_SUBSCRIPTION);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [subscriptionId, setSubscriptionId] = useState<string | null>(null);

  const subscribe = async (planId: string) => {
    if (!card.stripe) return;
    setBusy(true);
    setFailure(null);
    setNotice(null);
    try {
      const { js, card: element } = card.stripe;
      const method = await js.createPaymentMethod({ type: "card", card: element });
      if (method.error || !method.paymentMethod) {
        setFailure(method.error?.message ?? "The card could not be used.");
        return;
      }
      const input = { planId, paymentMethodId: method.paymentMethod.id, idempotencyKey: idempotencyKey() };
      const result = await createSubscription({ variables: { input } });
      const payload = result.data?.createSubscription;
      if (!payload) throw result.error ?? new Error("No answer from the billing API.");
      if (payload.userErrors.length) {
        setFailure(payload.userErrors.map((e) => e.message).join(" "));
        return;
      }
      if (payload.subscription) setSubscriptionId(payload.subscription.id);
      if (payload.requiresAction && payload.clientSecret) {
        setNotice("Your bank asks you to confirm this payment.");
        const confirmed = await js.confirmCardPayment(payload.clientSecret);
        if (confirmed.error) {
          setNotice(null);
          setFailure(`Authentication failed: ${confirmed.error.message ?? "refused"}`);
          return;
        }
        setNotice("Payment confirmed; the subscription activates as soon as Stripe reports it.");
        return;
      }
      setNotice("Subscribed.");
      onSubscribed();
    } catch (problem) {
      setFailure((problem as Error).message);
    } finally {
      setBusy(false);
    }
  };

  if (loading) return <Loading what="plans" />;
  if (error || !data) return <Failure error={error ?? "The plans could not be loaded."} />;
  const plans = data.plans.filter((plan) => plan.interval === interval);
  return (
    <section aria-labelledby="plans-heading">
      <h2 id="plans-heading">Plans</h2>
      {data.billingConfig.sandbox && (
        <p className="sandbox">Sandbox: no real money moves. Pick a test card below.</p>
      )}
      <div role="radiogroup" aria-label="Billing interval">
        {INTERVALS.map(([value, label]) => (
          <label key={value}>
            <input
              type="radio"
              name="interval"
              checked={interval === value}
              onChange={() => setBillingInterval(value)}
            />
            {label}
          </label>
        ))}
      </div>
      <div className="card-input">
        <span>Card</span>
        <div ref={card.host} />
      </div>
      <Failure error={card.error} />
      <ul className="plans">
        {plans.map((plan) => (
          <li key={plan.id} aria-label={plan.productName}>
            <h3>{plan.productName}</h3>
            <p className="price">
              {money(plan.amount)} / {interval === "MONTH" ? "month" : "year"}
            </p>
            {plan.credits && <p>{plan.credits} credits each period</p>}
            <button
              type="button"
              disabled={busy || !card.stripe}
              onClick={() => void subscribe(plan.id)}
            >
              Subscribe to {plan.productName}
            </button>
          </li>
        ))}
      </ul>
      <Failure error={failure} />
      <Notice message={notice} />
      {subscriptionId && <SubscriptionStatus id={subscriptionId} />}
    </section>
  );
}
