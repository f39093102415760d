package fsx

import (
	"bytes"
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// A completed WriteFileAtomic survives power loss; one whose rename never
// reached the directory leaves the old content, never a mix.
func TestWriteFileAtomicSurvivesCrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	if err := MkdirAll(mem, "/d"); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(mem, "/d/f", []byte("old")); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	if got, err := ReadFile(crashed, "/d/f"); err != nil || string(got) != "old" {
		t.Fatalf("after crash: %q, %v; want old", got, err)
	}

	// The same steps without the directory fsync: the rename is lost.
	if err := WriteFileSync(mem, "/d/f"+TempSuffix, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := mem.Rename("/d/f"+TempSuffix, "/d/f"); err != nil {
		t.Fatal(err)
	}
	crashed = mem.CrashClone(vfs.CrashCloneCfg{})
	if got, err := ReadFile(crashed, "/d/f"); err != nil || string(got) != "old" {
		t.Fatalf("unsynced rename: %q, %v; want old", got, err)
	}
}

// A failed fsync anywhere in WriteFileAtomic is reported, and the target
// keeps its old content.
func TestWriteFileAtomicReportsFailedSync(t *testing.T) {
	for _, op := range []errorfs.OpKind{errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileWrite, errorfs.OpCreate, errorfs.OpRename} {
		mem := vfs.NewMem()
		if err := WriteFileAtomic(mem, "/f", []byte("old")); err != nil {
			t.Fatal(err)
		}
		fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(o errorfs.Op) error {
			if o.Kind == op {
				return syscall.EIO
			}
			return nil
		}))
		err := WriteFileAtomic(fs, "/f", []byte("new"))
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("op %v: err %v, want EIO", op, err)
		}
		want := "old"
		if op == errorfs.OpFileSync {
			want = "new" // only the directory fsync failed: either may survive a crash
		}
		if got, _ := ReadFile(mem, "/f"); string(got) != want {
			t.Fatalf("op %v: content %q, want %q", op, got, want)
		}
	}
}

func TestTruncate(t *testing.T) {
	check := func(t *testing.T, fs FS, path string) {
		f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
		f, err = Truncate(fs, f, path, 4)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("ab"), 4); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if got, _ := ReadFile(fs, path); string(got) != "0123ab" {
			t.Fatalf("content %q, want 0123ab", got)
		}
	}
	t.Run("os", func(t *testing.T) { check(t, Default, filepath.Join(t.TempDir(), "f")) })
	t.Run("mem", func(t *testing.T) { check(t, vfs.NewMem(), "/f") })
	t.Run("errorfs over os", func(t *testing.T) {
		check(t, errorfs.Wrap(Default, errorfs.InjectorFunc(func(errorfs.Op) error { return nil })), filepath.Join(t.TempDir(), "f"))
	})
}

func TestMapFile(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 8192)
	for name, fs := range map[string]FS{"os": Default, "mem": vfs.NewMem()} {
		dir := "/"
		if fs == Default {
			dir = t.TempDir()
		}
		path := filepath.Join(dir, "idx")
		// A clone: under -race pebble's MemFS scrambles the buffers
		// written to it (invariants mode) to catch callers that reuse them.
		if err := WriteFileSync(fs, path, bytes.Clone(data)); err != nil {
			t.Fatal(err)
		}
		got, release, err := MapFile(fs, path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: mapped content differs", name)
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIsNoSpace(t *testing.T) {
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(errorfs.Op) error { return syscall.ENOSPC }))
	_, err := fs.Create("/f", vfs.WriteCategoryUnspecified)
	if !IsNoSpace(err) || IsNoSpace(syscall.EIO) {
		t.Fatalf("IsNoSpace(%v) wrong", err)
	}
}

// Every directory MkdirAll creates survives power loss (each new entry is
// fsynced into its parent).
func TestMkdirAllSurvivesCrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	if err := MkdirAll(mem, "/a/b/c"); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	if _, err := crashed.Stat("/a/b/c"); err != nil {
		t.Fatalf("after crash: %v", err)
	}
}
