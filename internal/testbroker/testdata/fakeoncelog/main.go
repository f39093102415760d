// Command fakeoncelog stands in for the oncelog binary in testbroker's own
// tests: it accepts the serve command line, answers ApiVersions on the Kafka
// listener, counts its starts in the data dir and shuts down on SIGTERM.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "fake oncelog: usage: serve [flags]")
		os.Exit(2)
	}
	flags := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := flags.String("listen", "", "")
	advertise := flags.String("advertise", "", "")
	dataDir := flags.String("data-dir", "", "")
	adminListen := flags.String("admin-listen", "", "")
	flags.String("http-listen", "", "")
	logLevel := flags.String("log-level", "", "")
	// mode selects a misbehaviour: "crash" exits before listening,
	// "unclean-stop" exits 1 on SIGTERM.
	mode := flags.String("mode", "normal", "")
	flags.Parse(os.Args[2:])

	fmt.Fprintf(os.Stderr, "fake oncelog: listen=%s advertise=%s data-dir=%s admin=%s log-level=%s mode=%s env=%s\n",
		*listen, *advertise, *dataDir, *adminListen, *logLevel, *mode, os.Getenv("FAKE_ONCELOG_ENV"))
	if *mode == "crash" {
		fmt.Fprintln(os.Stderr, "fake oncelog: fatal: crashing on purpose")
		os.Exit(3)
	}

	starts := countStart(*dataDir)
	fmt.Fprintf(os.Stderr, "fake oncelog: start %d\n", starts)

	kafka, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake oncelog:", err)
		os.Exit(1)
	}
	admin, err := net.Listen("tcp", *adminListen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake oncelog:", err)
		os.Exit(1)
	}
	go acceptLoop(kafka, serveKafka)
	go acceptLoop(admin, func(c net.Conn) { c.Close() })

	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	<-term
	kafka.Close()
	admin.Close()
	if *mode == "unclean-stop" {
		fmt.Fprintln(os.Stderr, "fake oncelog: failing shutdown on purpose")
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "fake oncelog: clean shutdown")
}

// countStart increments and returns the start counter kept in dataDir.
func countStart(dataDir string) int {
	path := filepath.Join(dataDir, "starts")
	data, _ := os.ReadFile(path)
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	n++
	if err := os.WriteFile(path, []byte(strconv.Itoa(n)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "fake oncelog:", err)
		os.Exit(1)
	}
	return n
}

func acceptLoop(l net.Listener, serve func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go serve(c)
	}
}

// serveKafka answers every request as if it were ApiVersions.
func serveKafka(c net.Conn) {
	defer c.Close()
	for {
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		frame := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(c, frame); err != nil || len(frame) < 8 {
			return
		}
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version = int16(binary.BigEndian.Uint16(frame[2:4]))
		resp.ApiKeys = []kmsg.ApiVersionsResponseApiKey{{ApiKey: 18, MinVersion: 0, MaxVersion: 4}}
		body := append([]byte(nil), frame[4:8]...) // correlation id
		body = resp.AppendTo(body)
		out := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		if _, err := c.Write(append(out, body...)); err != nil {
			return
		}
	}
}
