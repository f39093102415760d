import type { ReactNode } from "react";
import { useHashRoute } from "./hooks";
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

export function App() {
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
      </nav>
      <main>{page}</main>
    </div>
  );
}
