import { useState, type FormEvent } from "react";
import { post, type Session } from "../api";

// Login is shown when the broker authenticates its clients (SASL): the
// console then acts as the user logged in, with that user's ACLs.
export function Login({ onLogin, note }: { onLogin: (s: Session) => void; note?: string }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onLogin(await post<Session>("/api/login", { username, password }));
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="login">
      <form onSubmit={submit} data-testid="login-form">
        <div className="brand-dark">oncelog</div>
        <h1>Log in</h1>
        <p className="muted">
          This broker authenticates its clients (SASL). The console acts as the user you log in as: what you see and
          do is what the broker&apos;s ACLs allow that user.
        </p>
        {note && <p className="muted" data-testid="login-note">{note}</p>}
        <label className="field">
          Username
          <input name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required autoFocus />
        </label>
        <label className="field">
          Password
          <input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        {error && <p className="error" role="alert" data-testid="login-error">{error}</p>}
        <button type="submit" disabled={busy || username === ""} data-testid="login-submit">{busy ? "Checking…" : "Log in"}</button>
      </form>
    </div>
  );
}
