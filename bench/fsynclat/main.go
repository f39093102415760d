// Command fsynclat measures fdatasync latency on the disk under a directory
// the way a broker's partition logs meet it: N files, each written by its
// own goroutine in writes of --size bytes, each write followed by an
// fdatasync, all N side by side for --duration. It runs three layouts:
//
//   - append: each write extends its file (a log segment as oncelog and
//     Kafka write it): on ext4 every fdatasync then also commits the journal
//     transaction that records the file's new size;
//   - overwrite: the writes go over blocks already written and synced (the
//     file is pre-filled with zeros first): fdatasync has no metadata to
//     commit;
//   - fallocate: over space reserved with fallocate(2), which ext4 keeps as
//     unwritten extents until written, so each write still changes metadata.
//
// It prints, per layout and file count, the fsyncs done and their mean
// latency. It is for explaining the fsync figures of the bench (the
// transactions row, the latency rows), not part of the bench report.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	dir := flag.String("dir", ".", "directory on the disk to measure (a temporary directory is made and removed in it)")
	files := flag.String("files", "1,8", "comma-separated file counts to run, each side by side")
	layouts := flag.String("layouts", "append,overwrite,fallocate", "layouts to run: append, overwrite, fallocate")
	size := flag.Int("size", 11000, "bytes per write (11000: a 100-record transaction of 100-byte records)")
	duration := flag.Duration("duration", 2*time.Second, "how long each run writes")
	region := flag.Int64("region", 256<<20, "bytes pre-filled (overwrite) or reserved (fallocate) per file")
	flag.Parse()
	for _, layout := range strings.Split(*layouts, ",") {
		for _, f := range strings.Split(*files, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				log.Fatalf("--files: %q is not a file count", f)
			}
			count, mean, err := run(*dir, layout, n, *size, *region, *duration)
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("%-9s %3d files: %7d fsyncs, %8.0f/s, mean %v\n", layout, n, count, float64(count)/duration.Seconds(), mean.Round(time.Microsecond))
		}
	}
}

// run writes n files side by side for d and returns the fsyncs done and
// their mean latency.
func run(parent, layout string, n, size int, region int64, d time.Duration) (int, time.Duration, error) {
	dir, err := os.MkdirTemp(parent, "fsynclat-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	fds := make([]*os.File, n)
	for i := range fds {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%d", i)))
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		if err := prepare(f, layout, region); err != nil {
			return 0, 0, err
		}
		fds[i] = f
	}
	var (
		mu    sync.Mutex
		total time.Duration
		count int
		first error
		wg    sync.WaitGroup
	)
	buf := make([]byte, size)
	end := time.Now().Add(d)
	for _, f := range fds {
		wg.Go(func() {
			var off int64
			var took time.Duration
			c := 0
			var err error
			for time.Now().Before(end) && (layout == "append" || off+int64(size) <= region) {
				if _, err = f.WriteAt(buf, off); err != nil {
					break
				}
				off += int64(size)
				start := time.Now()
				if err = unix.Fdatasync(int(f.Fd())); err != nil {
					break
				}
				took += time.Since(start)
				c++
			}
			mu.Lock()
			total += took
			count += c
			if err != nil && first == nil {
				first = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if first != nil {
		return 0, 0, first
	}
	if count == 0 {
		return 0, 0, fmt.Errorf("%s: no fsync done", layout)
	}
	return count, total / time.Duration(count), nil
}

// prepare lays a file out for its layout, synced, before the clock starts.
func prepare(f *os.File, layout string, region int64) error {
	switch layout {
	case "append":
		return nil
	case "overwrite":
		zeros := make([]byte, 1<<20)
		for off := int64(0); off < region; off += int64(len(zeros)) {
			if _, err := f.Write(zeros); err != nil {
				return err
			}
		}
	case "fallocate":
		if err := unix.Fallocate(int(f.Fd()), 0, 0, region); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown layout %q (append, overwrite, fallocate)", layout)
	}
	return unix.Fdatasync(int(f.Fd()))
}
