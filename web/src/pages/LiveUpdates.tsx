import { useApolloClient, useSubscription } from "@apollo/client/react";
import { useRef } from "react";
import { BILLING_UPDATES } from "../operations";

// Every billing change pushed over the websocket: the subscription in it updates the cache
// by id at once; lists (invoices, payments, credits) are re-read, a burst of changes once.
export function LiveUpdates() {
  const client = useApolloClient();
  const pending = useRef<number | null>(null);
  useSubscription(BILLING_UPDATES, {
    onData: () => {
      if (pending.current !== null) return;
      pending.current = window.setTimeout(() => {
        pending.current = null;
        void client.refetchQueries({ include: "active" });
      }, 250);
    },
  });
  return null;
}
