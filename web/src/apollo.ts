import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { createClient, type Client } from "graphql-ws";

export type LiveState = "connecting" | "live" | "offline";

// The API is on the page's own origin (`serve` hosts both); queries and mutations go over
// HTTP, subscriptions over one graphql-transport-ws socket authorized by connection_init.
export function billingClient(token: string, onLive: (state: LiveState) => void) {
  const httpUrl = new URL("/graphql", window.location.href).toString();
  const wsUrl = httpUrl.replace(/^http/, "ws");
  const authorization = `Bearer ${token}`;
  const socket: Client = createClient({
    url: wsUrl,
    connectionParams: { authorization },
    retryAttempts: Infinity,
    shouldRetry: () => true,
    on: {
      connecting: () => onLive("connecting"),
      connected: () => onLive("live"),
      closed: () => onLive("offline"),
    },
  });
  const isSubscription = ({ query }: ApolloLink.Operation) => {
    const definition = getMainDefinition(query);
    return definition.kind === "OperationDefinition" && definition.operation === "subscription";
  };
  const link = ApolloLink.split(
    isSubscription,
    new GraphQLWsLink(socket),
    new HttpLink({ uri: httpUrl, headers: { authorization } }),
  );
  const cache = new InMemoryCache({
    // Viewer, Admin and their parts have no id: each query's fields are merged, not replaced.
    typePolicies: {
      Viewer: { merge: true },
      Admin: { merge: true },
      CreditAccount: { merge: true },
      BillingAccess: { merge: true },
      BillingMetrics: { merge: true },
    },
  });
  const client = new ApolloClient({ link, cache });
  return { client, close: () => socket.dispose() };
}
