package wire

import (
	"context"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

type handlerFunc func(c *conn, r *request) respond

type handlerEntry struct {
	min, max int16
	fn       handlerFunc
}

var handlers = map[int16]handlerEntry{}

// register declares that key is served at versions [min, max] by fn. Every
// handler file calls it from init.
func register(key, min, max int16, fn handlerFunc) {
	handlers[key] = handlerEntry{min: min, max: max, fn: fn}
}

// ready wraps a response that is complete when the handler returns.
func ready(resp kmsg.Response) respond {
	return func(context.Context) kmsg.Response { return resp }
}

// supportedAPIs lists what we serve, sorted by key, for ApiVersions.
func supportedAPIs() []kmsg.ApiVersionsResponseApiKey {
	out := make([]kmsg.ApiVersionsResponseApiKey, 0, len(handlers))
	for key, h := range handlers {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = key, h.min, h.max
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ApiKey < out[j].ApiKey })
	return out
}
