import { useCallback, useEffect, useState, type ReactNode } from "react";
import { get, loginRequiredEvent, post, setCsrfToken, type Session } from "./api";
import { useHashRoute } from "./hooks";
import { Login } from "./pages/Login";
import { Overview } from "./pages/Overview";
import { Topics, Topic } from "./pages/Topics";
import { Transactions } from "./pages/Transactions";
import { Groups, Group } from "./pages/Groups";
import { KeyWindowPage } from "./pages/KeyWindow";
import { Charts } from "./pages/Charts";

const nav: [string, string][] = [
  ["", "Overview"],
  ["topics", "Topics"],
  ["transactions", "Transactions"],
  ["groups", "Consumer groups"],
  ["keys", "Key window"],
  ["charts", "Live charts"],
];

// App asks GET /api/session first: with a SASL broker the console needs a
// login, and every page then acts as that user; without one it is open.
export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [sessionError, setSessionError] = useState<string | null>(null);
  const [note, setNote] = useState<string | undefined>(undefined);
  const adopt = useCallback((s: Session) => {
    setCsrfToken(s.csrf_token ?? "");
    setSession(s);
  }, []);
  useEffect(() => {
    get<Session>("/api/session").then(adopt, (e: Error) => setSessionError(e.message));
    const expired = () => {
      setCsrfToken("");
      setNote("Your session ended (logged out, idle or too old): log in again.");
      setSession({ login_required: true });
    };
    window.addEventListener(loginRequiredEvent, expired);
    return () => window.removeEventListener(loginRequiredEvent, expired);
  }, [adopt]);
  if (sessionError) return <p className="error" role="alert">{sessionError}</p>;
  if (session === null) return <p className="muted">Loading…</p>;
  if (session.login_required && !session.user) {
    return <Login onLogin={(s) => { setNote(undefined); adopt(s); }} note={note} />;
  }
  const logout = async () => {
    try {
      await post("/api/logout", {});
    } finally {
      setCsrfToken("");
      setNote("Logged out.");
      setSession({ login_required: true });
    }
  };
  return <Pages user={session.user} onLogout={logout} />;
}

function Pages({ user, onLogout }: { user?: string; onLogout: () => void }) {
  const route = useHashRoute();
  const section = route[0] ?? "";
  let page: ReactNode;
  switch (section) {
    case "":
      page = <Overview />;
      break;
    case "topics":
      page = route[1] ? <Topic name={route[1]} tab={route[2] ?? "partitions"} /> : <Topics />;
      break;
    case "transactions":
      page = <Transactions />;
      break;
    case "groups":
      page = route[1] ? <Group name={route[1]} /> : <Groups />;
      break;
    case "keys":
      page = <KeyWindowPage />;
      break;
    case "charts":
      page = <Charts />;
      break;
    default:
      page = <p className="error">No page “{section}”.</p>;
  }
  return (
    <div className="layout">
      <nav>
        <div className="brand">oncelog</div>
        {nav.map(([path, label]) => (
          <a key={path} href={`#/${path}`} className={section === path ? "active" : ""} data-testid={`nav-${path || "overview"}`}>
            {label}
          </a>
        ))}
        {user && (
          <div className="whoami" data-testid="whoami">
            logged in as <b>{user}</b>
            <br />
            <button className="secondary" onClick={onLogout} data-testid="logout">Log out</button>
          </div>
        )}
      </nav>
      <main>{page}</main>
    </div>
  );
}
