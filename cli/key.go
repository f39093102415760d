package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/oncelog/oncelog/httpapi"
	"github.com/spf13/cobra"
)

// The key window is oncelog's, not Kafka's: no Kafka API can ask for a key,
// so `oncelog key get` asks the broker's HTTP ingest listener
// (GET /v1/topics/{topic}/keys/{key}).
const (
	defaultHTTPURL = "http://127.0.0.1:8082" // `oncelog serve`'s --http-listen
	httpURLEnv     = "ONCELOG_HTTP_URL"
	// keyAnswerLimit bounds the answer read: a key entry is a few hundred bytes.
	keyAnswerLimit = 1 << 20
)

func newKeyCmd() *cobra.Command {
	cmd := newParentCmd("key", "Look up idempotency keys in a topic's key window",
		`Look up the idempotency keys a topic's key window holds (topics with
oncelog.dedup.key set; see docs/key-window.md).`)
	cmd.AddCommand(newKeyGetCmd())
	return cmd
}

type keyGetOptions struct {
	httpURL string
	output  string
	timeout time.Duration
}

func newKeyGetCmd() *cobra.Command {
	o := &keyGetOptions{}
	cmd := &cobra.Command{
		Use:   "get <topic> <key>",
		Short: "Say whether a key was written within the window, and where",
		Long: `Ask the broker whether <key> is in <topic>'s key window: whether a record
with that idempotency key (the header or the record key the topic's
oncelog.dedup.key names) was written within oncelog.dedup.window.ms, and if so
its partition, offset, timestamp and content digest (SHA-256 of the value and
the other headers: a replay with the same digest is a duplicate, another
digest a conflict).

The key window is not part of the Kafka protocol, so the lookup goes to the
broker's HTTP listener (--http, oncelog serve's --http-listen), not to
--brokers. Exit status: 0 when the key is in the window, 1 when it is not (or
the topic does not exist), 2 on usage errors or when the broker cannot be
asked.`,
		Example: `  oncelog key get payments order-42
  oncelog key get payments order-42 --http http://broker1:8082 --output json | jq .offset`,
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(cmd); err != nil {
				return err
			}
			return runKeyGet(cmd.Context(), o, cmd.OutOrStdout(), args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.httpURL, "http", defaultHTTPURL, "base URL of the broker's HTTP listener (env "+httpURLEnv+")")
	f.StringVar(&o.output, "output", "text", "output format: text for people, json for scripts")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "time limit for the lookup")
	return cmd
}

func (o *keyGetOptions) validate(cmd *cobra.Command) error {
	if !cmd.Flags().Changed("http") {
		if env := strings.TrimSpace(os.Getenv(httpURLEnv)); env != "" {
			o.httpURL = env
		}
	}
	u, err := url.Parse(o.httpURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErrorf("--http %q: give the listener's base URL, e.g. %s", o.httpURL, defaultHTTPURL)
	}
	switch o.output {
	case "text", "json":
	default:
		return usageErrorf("--output %q: use text or json", o.output)
	}
	if o.timeout <= 0 {
		return usageErrorf("--timeout must be positive, got %s", o.timeout)
	}
	return nil
}

// keyGetResult is the --output json result of `key get`.
type keyGetResult struct {
	Topic     string `json:"topic"`
	Key       string `json:"key"`
	Found     bool   `json:"found"`
	Partition *int32 `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
	Timestamp *int64 `json:"timestamp,omitempty"`
	Digest    string `json:"digest,omitempty"`
	// Reason says why the key was not found (the broker's message).
	Reason string `json:"reason,omitempty"`
}

func runKeyGet(ctx context.Context, o *keyGetOptions, out io.Writer, topic, key string) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	where := strings.TrimRight(o.httpURL, "/") + "/v1/topics/" + url.PathEscape(topic) + "/keys/" + url.PathEscape(key)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return usageErrorf("%v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		hint := "is `oncelog serve` running there with --http-listen? set --http or " + httpURLEnv
		if errors.Is(err, context.DeadlineExceeded) {
			hint = "raise --timeout or check the broker"
		}
		return &exitError{code: 2, err: fmt.Errorf("cannot ask %s: %s (%w)", o.httpURL, hint, err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, keyAnswerLimit))
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("reading the answer of %s: %w", where, err)}
	}
	res := keyGetResult{Topic: topic, Key: key}
	switch resp.StatusCode {
	case http.StatusOK:
		var e httpapi.KeyResponse
		if err := json.Unmarshal(raw, &e); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("%s answered 200 with %q, not a key entry: is --http an oncelog HTTP listener?", where, truncate(raw))}
		}
		res.Found, res.Partition, res.Offset, res.Timestamp, res.Digest = true, &e.Partition, &e.Offset, &e.Timestamp, e.Digest
	case http.StatusNotFound:
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			return &exitError{code: 2, err: fmt.Errorf("%s: 404 %q: is --http an oncelog HTTP listener?", where, truncate(raw))}
		}
		res.Reason = e.Error
	default:
		var e struct {
			Error string `json:"error"`
		}
		msg := string(truncate(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &exitError{code: 2, err: fmt.Errorf("%s: %s: %s", where, resp.Status, msg)}
	}

	if o.output == "json" {
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else if res.Found {
		tw := newTable(out)
		fmt.Fprintf(tw, "topic\t%s\n", res.Topic)
		fmt.Fprintf(tw, "key\t%s\n", res.Key)
		fmt.Fprintf(tw, "partition\t%d\n", *res.Partition)
		fmt.Fprintf(tw, "offset\t%d\n", *res.Offset)
		fmt.Fprintf(tw, "timestamp\t%s (%d)\n", time.UnixMilli(*res.Timestamp).UTC().Format(time.RFC3339Nano), *res.Timestamp)
		fmt.Fprintf(tw, "digest\t%s\n", res.Digest)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !res.Found {
		// Exit 1 like grep: a script can test for the key.
		return &exitError{code: 1, err: errors.New(res.Reason)}
	}
	return nil
}

// truncate shortens an unexpected answer for an error message.
func truncate(b []byte) []byte {
	if len(b) > 200 {
		return append(b[:200:200], "..."...)
	}
	return b
}
