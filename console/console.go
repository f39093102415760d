// Package console is oncelog's web console: a single-page app (the React
// bundle in dist/, built from web/ and embedded in the binary, so `oncelog
// serve` needs nothing else) and the JSON endpoints it calls under /api/.
//
// The endpoints own no state. They ask the broker what any Kafka client
// could ask, through a kadm/kgo client on the broker's own Kafka listener
// (so the console would show a Kafka cluster just as well), and read the
// broker's Prometheus registry for what the Kafka protocol does not carry:
// log sizes and end offsets, duplicates dropped (per partition), the key window's counters
// and the live charts. Key lookups go to the HTTP ingest listener's
// GET /v1/topics/{topic}/keys/{key}, the one place that answers them.
//
// Anyone who can reach the admin listener can use the console, with the
// broker's full rights (it can alter configs and abort transactions): keep
// the admin listener on loopback or protect it (docs/console.md).
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
	// Gatherer is the broker's metrics registry; nil hides the charts and
	// the figures only metrics carry.
	Gatherer prometheus.Gatherer
	// Listeners and Version are shown on the overview.
	Listeners []Listener
	Version   string
	// KeyLookupURL is the HTTP ingest listener's base URL
	// (http://127.0.0.1:8082); empty turns key lookup off.
	KeyLookupURL string
	// RequestTimeout bounds each API call (default 15s).
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// Console serves the web UI and its API.
type Console struct {
	cfg     Config
	client  *kgo.Client
	adm     *kadm.Client
	static  http.Handler
	handler http.Handler
	// browse bounds concurrent record browsing: each opens a consumer.
	browse chan struct{}
}

// maxConcurrentBrowse is how many record-browser reads run at once; each
// holds a consumer client and up to maxBrowseBytes of records.
const maxConcurrentBrowse = 4

// New builds the console. Its client connects lazily, so New does not
// wait for the broker.
func New(cfg Config) (*Console, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("console: no broker address")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ClientID("oncelog-console")}, cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	dist, err := fs.Sub(assets, "dist")
	if err != nil {
		cl.Close()
		return nil, err
	}
	c := &Console{
		cfg: cfg, client: cl, adm: kadm.NewClient(cl),
		static: spa(dist), browse: make(chan struct{}, maxConcurrentBrowse),
	}
	mux := http.NewServeMux()
	c.routes(mux)
	mux.Handle("/", c.static)
	c.handler = mux
	return c, nil
}

// Close closes the console's Kafka client.
func (c *Console) Close() { c.client.Close() }

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
