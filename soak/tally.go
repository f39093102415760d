package soak

import (
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
)

// outcome is how the broker answered one hostile request (or connection).
type outcome struct {
	// label groups outcomes in the report: an error code name, "closed",
	// "held", ...
	label string
	// expected is false for an answer the broker must not give.
	expected bool
	// answered is true when the broker answered with a Kafka response (not
	// a closed connection); kinds that need an answer require at least one.
	answered bool
	detail   string // for unexpected outcomes: what happened
	bytes    int    // size of the response frame, if one was read
}

func answeredCode(code int16, expected ...int16) outcome {
	o := outcome{label: codeName(code), answered: true, expected: slices.Contains(expected, code)}
	if !o.expected {
		o.detail = fmt.Sprintf("error code %s, want one of %s", codeName(code), codeNames(expected))
	}
	return o
}

func closedOutcome() outcome { return outcome{label: "connection closed", expected: true} }

func unexpected(label, format string, args ...any) outcome {
	return outcome{label: label, detail: fmt.Sprintf(format, args...)}
}

func codeName(code int16) string {
	if code == 0 {
		return "NONE(0)"
	}
	if err := kerr.ErrorForCode(code); err != nil {
		if ke, ok := err.(*kerr.Error); ok {
			return fmt.Sprintf("%s(%d)", ke.Message, code)
		}
	}
	return fmt.Sprintf("code %d", code)
}

func codeNames(codes []int16) string {
	s := ""
	for i, c := range codes {
		if i > 0 {
			s += ", "
		}
		s += codeName(c)
	}
	return s
}

// KindResult is what one hostile kind did and how the broker answered.
type KindResult struct {
	Kind        string
	Expect      string         // what the broker should answer, in words
	Attempts    int            // outcomes counted
	Labels      map[string]int // outcomes by label
	Answered    int            // outcomes that were Kafka responses
	Unexpected  int
	MaxAnswer   int      // largest response frame read, in bytes
	Examples    []string // the first unexpected outcomes
	NeedsAnswer bool     // the kind requires at least one Kafka response
}

// OK reports whether every outcome was expected and, if the kind needs
// one, at least one was an answer.
func (k *KindResult) OK() bool {
	return k.Unexpected == 0 && k.Attempts > 0 && (!k.NeedsAnswer || k.Answered > 0)
}

// tally counts the outcomes of every kind, concurrently.
type tally struct {
	mu    sync.Mutex
	kinds map[string]*KindResult
	order []string
}

func newTally() *tally { return &tally{kinds: make(map[string]*KindResult)} }

func (t *tally) register(name, expect string, needsAnswer bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.kinds[name] = &KindResult{Kind: name, Expect: expect, Labels: make(map[string]int), NeedsAnswer: needsAnswer}
	t.order = append(t.order, name)
}

func (t *tally) add(kind string, o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.kinds[kind]
	k.Attempts++
	k.Labels[o.label]++
	if o.answered {
		k.Answered++
	}
	k.MaxAnswer = max(k.MaxAnswer, o.bytes)
	if !o.expected {
		k.Unexpected++
		if len(k.Examples) < maxExamples {
			k.Examples = append(k.Examples, o.detail)
		}
	}
}

// totals is the number of outcomes and of unexpected ones so far.
func (t *tally) totals() (attempts, unexpected int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.kinds {
		attempts += k.Attempts
		unexpected += k.Unexpected
	}
	return attempts, unexpected
}

// results copies the per-kind results in registration order.
func (t *tally) results() []KindResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]KindResult, 0, len(t.order))
	for _, name := range t.order {
		k := *t.kinds[name]
		k.Labels = make(map[string]int, len(t.kinds[name].Labels))
		for l, n := range t.kinds[name].Labels {
			k.Labels[l] = n
		}
		k.Examples = slices.Clone(k.Examples)
		out = append(out, k)
	}
	return out
}

const maxExamples = 5
