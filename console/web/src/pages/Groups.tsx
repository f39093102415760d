import { enc, type GroupDetail, type GroupRow } from "../api";
import { useApi } from "../hooks";
import { num } from "../format";
import { Show, Table } from "./common";

export function Groups() {
  const loaded = useApi<GroupRow[]>("/api/groups", 5000);
  return (
    <>
      <h1>Consumer groups</h1>
      <Show loaded={loaded}>
        {(groups) => (
          <Table head={["group", "type", "state", "members", "lag"]} testid="groups">
            {groups.map((g) => (
              <tr key={g.group}>
                <td><a href={`#/groups/${enc(g.group)}`}>{g.group}</a></td>
                <td>{g.type || g.protocol_type}</td><td>{g.state}</td><td>{g.members}</td><td>{num(g.lag)}</td>
              </tr>
            ))}
          </Table>
        )}
      </Show>
    </>
  );
}

export function Group({ name }: { name: string }) {
  const loaded = useApi<GroupDetail>(`/api/groups/${enc(name)}`, 5000);
  return (
    <Show loaded={loaded}>
      {(g) => {
        // KIP-848 consumer groups and share groups have member epochs (and
        // consumer groups target assignments); classic groups do not.
        const modern = g.type === "consumer" || g.type === "share";
        return (
          <>
            <h1>{g.group}</h1>
            <p className="muted" data-testid="group-summary">
              {g.type ? `${g.type} group` : g.protocol_type} · {g.state} · {g.protocol}
              {g.epoch !== undefined && ` · epoch ${g.epoch}`} · coordinator {g.coordinator} · lag {num(g.lag)}
            </p>
            <h2>Members</h2>
            <Table
              head={modern
                ? ["member id", "instance id", "client id", "host", "epoch", "subscribed", "assigned", ...(g.type === "consumer" ? ["target"] : [])]
                : ["member id", "instance id", "client id", "host", "assigned"]}
              testid="members"
            >
              {g.members.map((m) => (
                <tr key={m.member_id}>
                  <td className="mono">{m.member_id}</td><td>{m.instance_id ?? ""}</td><td>{m.client_id}</td><td>{m.host}</td>
                  {modern && <><td>{m.member_epoch ?? ""}</td><td className="mono">{(m.subscribed ?? []).join(", ")}</td></>}
                  <td className="mono">{m.assignments.join(", ")}</td>
                  {g.type === "consumer" && <td className="mono">{(m.target_assignment ?? []).join(", ")}</td>}
                </tr>
              ))}
            </Table>
            {g.type === "share" ? (
              <>
                <h2>Share-partition offsets</h2>
                <Table head={["partition", "start offset", "lag", "error"]} testid="share-offsets">
                  {(g.share_offsets ?? []).map((o) => (
                    <tr key={`${o.topic}-${o.partition}`}>
                      <td className="mono">{o.topic}/{o.partition}</td><td>{o.start_offset}</td>
                      <td>{o.lag < 0 ? "–" : num(o.lag)}</td><td className="error">{o.error ?? ""}</td>
                    </tr>
                  ))}
                </Table>
              </>
            ) : (
              <>
                <h2>Offsets and lag</h2>
                <Table head={["partition", "committed", "end", "lag", "member", "error"]} testid="offsets">
                  {g.offsets.map((o) => (
                    <tr key={`${o.topic}-${o.partition}`}>
                      <td className="mono">{o.topic}/{o.partition}</td><td>{o.committed}</td><td>{o.end}</td><td>{num(o.lag)}</td>
                      <td className="mono">{o.member_id ?? ""}</td><td className="error">{o.error ?? ""}</td>
                    </tr>
                  ))}
                </Table>
              </>
            )}
          </>
        );
      }}
    </Show>
  );
}
