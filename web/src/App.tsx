import { ApolloProvider } from "@apollo/client/react";
import { useEffect, useMemo, useState } from "react";
import { billingClient, type LiveState } from "./apollo";
import { Admin } from "./pages/Admin";
import { Billing } from "./pages/Billing";
import { Plans } from "./pages/Plans";
import { SignIn } from "./pages/SignIn";
import { LiveUpdates } from "./pages/LiveUpdates";
import { storedToken, storeToken } from "./session";

const PAGES = { plans: "Plans", billing: "Billing", admin: "Admin" } as const;
type Page = keyof typeof PAGES;

function currentPage(): Page {
  const name = window.location.hash.replace(/^#\/?/, "");
  return name in PAGES ? (name as Page) : "plans";
}

export function App() {
  const [token, setToken] = useState(storedToken);
  const [page, setPage] = useState(currentPage);
  const [live, setLive] = useState<LiveState>("connecting");

  useEffect(() => {
    const onHash = () => setPage(currentPage());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  // One client per signed-in token: a new token gets a fresh cache and its own socket.
  const session = useMemo(() => (token ? billingClient(token, setLive) : null), [token]);
  useEffect(() => () => void session?.close(), [session]);

  const signOut = () => {
    storeToken(null);
    setToken(null);
  };

  if (!token || !session) {
    return (
      <main>
        <h1>Billing</h1>
        <SignIn
          onSignedIn={(value) => {
            storeToken(value);
            setToken(value);
          }}
        />
      </main>
    );
  }
  return (
    <ApolloProvider client={session.client}>
      <LiveUpdates />
      <header>
        <h1>Billing</h1>
        <nav aria-label="Pages">
          {(Object.keys(PAGES) as Page[]).map((name) => (
            <a key={name} href={`#/${name}`} aria-current={page === name ? "page" : undefined}>
              {PAGES[name]}
            </a>
          ))}
        </nav>
        <span className={`live live-${live}`} role="status" aria-label="Live updates">
          {live === "live" ? "Live" : live === "connecting" ? "Connecting…" : "Offline"}
        </span>
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>
        {page === "plans" && <Plans onSubscribed={() => (window.location.hash = "#/billing")} />}
        {page === "billing" && <Billing token={token} />}
        {page === "admin" && <Admin />}
      </main>
    </ApolloProvider>
  );
}
