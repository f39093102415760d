// Package console is oncelog's web console: a single-page app (the React
// bundle in dist/, built from web/ and embedded in the binary, so `oncelog
// serve` needs nothing else) and the JSON endpoints it calls under /api/.
//
// The endpoints own no state but the login sessions. They ask the broker
// what any Kafka client could ask, through a kadm/kgo client on the
// broker's own Kafka listener (so the console would show a Kafka cluster
// just as well), and read the broker's Prometheus registry for what the
// Kafka protocol does not carry: log sizes and end offsets, duplicates
// dropped (per partition), the key window's counters and the live charts.
// Key lookups go to the HTTP ingest listener's
// GET /v1/topics/{topic}/keys/{key}, the one place that answers them.
//
// Without Config.Login the console has one client, and anyone who can
// reach the admin listener acts with that client's rights. With it (the
// broker has SASL listeners), every browser logs in with a username and
// password, and gets a client of its own authenticated as that user: the
// broker's ACLs decide each thing the console shows or does (session.go,
// docs/console.md).
package console

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

//go:embed all:dist
var assets embed.FS

// Listener describes a Kafka listener for the overview page.
type Listener struct {
	Name      string `json:"name"`
	Protocol  string `json:"protocol"`
	Address   string `json:"address"`
	Advertise string `json:"advertise"`
}

// Config says where the console finds the broker.
type Config struct {
	// Brokers is the bootstrap list of the console's Kafka client: the
	// broker's own listener.
	Brokers []string
	// ClientOpts are added to the client's options (SASL, TLS).
	ClientOpts []kgo.Opt
	// Login, if set, makes every browser log in: Brokers and ClientOpts
	// are then unused, each session has a client of its own.
	Login *Login
	// Gatherer is the broker's metrics registry; nil hides the charts and
	// the figures only metrics carry.
	Gatherer prometheus.Gatherer
	// Listeners and Version are shown on the overview.
	Listeners []Listener
	Version   string
	// KeyLookupURL is the HTTP ingest listener's base URL
	// (http://127.0.0.1:8082); empty turns key lookup off.
	KeyLookupURL string
	// KeyLookupToken, if set, is a bearer token that listener accepts
	// (its --http-token-file), sent with every lookup; called per lookup,
	// so a token file reloaded on SIGHUP is followed.
	KeyLookupToken func() string
	// RequestTimeout bounds each API call (default 15s).
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// Console serves the web UI and its API.
type Console struct {
	cfg Config
	// open is the one client's view, without Login; sessions are the
	// logged-in browsers' views, with it.
	open     *view
	sessions *sessionStore
	static   http.Handler
	handler  http.Handler
	// browse bounds concurrent record browsing: each opens a consumer.
	browse chan struct{}
}

// maxConcurrentBrowse is how many record-browser reads run at once; each
// holds a consumer client and up to maxBrowseBytes of records.
const maxConcurrentBrowse = 4

// view is what one request acts through: the open console's client, or
// the session's client of the user logged in.
type view struct {
	*Console
	cl  *kgo.Client
	adm *kadm.Client
	// opts make a client like adm's (seed brokers, TLS, SASL): the
	// record browser opens a consumer with them.
	opts []kgo.Opt
	// user is the SASL username; "" for the open console.
	user string
}

// New builds the console. Its client connects lazily, so New does not
// wait for the broker.
func New(cfg Config) (*Console, error) {
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	dist, err := fs.Sub(assets, "dist")
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, static: spa(dist), browse: make(chan struct{}, maxConcurrentBrowse)}
	if cfg.Login != nil {
		if c.sessions, err = newSessionStore(c, *cfg.Login); err != nil {
			return nil, err
		}
	} else {
		if len(cfg.Brokers) == 0 {
			return nil, errors.New("console: no broker address")
		}
		opts := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ClientID("oncelog-console")}, cfg.ClientOpts...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return nil, err
		}
		c.open = &view{Console: c, cl: cl, adm: kadm.NewClient(cl), opts: opts}
	}
	mux := http.NewServeMux()
	c.routes(mux)
	mux.Handle("/", c.static)
	c.handler = mux
	return c, nil
}

// Close closes the console's Kafka clients: the open console's, or every
// session's.
func (c *Console) Close() {
	if c.open != nil {
		c.open.adm.Close()
	}
	if c.sessions != nil {
		c.sessions.close()
	}
}

// Handler serves the API under /api/ and the app at / (any other path
// without a file extension gets index.html, for the app's router).
func (c *Console) Handler() http.Handler { return c.handler }

// spa serves the bundle; unknown paths without a file extension get
// index.html, so a reload on a deep link works.
func spa(dist fs.FS) http.Handler {
	files := http.FileServerFS(dist)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		path := strings.TrimPrefix(r.URL.Path, "/")
		if path != "" {
			if _, err := fs.Stat(dist, path); err != nil {
				if strings.Contains(path[strings.LastIndex(path, "/")+1:], ".") {
					http.NotFound(w, r)
					return
				}
				r = r.Clone(r.Context())
				r.URL.Path = "/"
			}
		}
		if strings.HasPrefix(path, "assets/") {
			// Vite names assets by content hash: cache them for good.
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
		files.ServeHTTP(w, r)
	})
}

func (c *Console) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), c.cfg.RequestTimeout)
}
