package kafkafixture

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// ClasspathEnv, if set, is the Kafka classpath to use as is (entries joined
// with ':'), instead of asking Maven for it.
const ClasspathEnv = "ONCELOG_KAFKA_CLASSPATH"

// pomPath is where the Maven module that pins Kafka's version lives, relative
// to the checkout root. Its test classpath is the Kafka broker's classpath,
// so the Go tests run the very Kafka the JVM suite runs.
const pomPath = "e2e/jvm/pom.xml"

var classpathCache struct {
	mu    sync.Mutex
	byPom map[string]string // pom.xml path -> classpath
}

// Tools reports why the fixture cannot run here: java or mvn missing from
// PATH (JAVA_HOME/bin/java counts for java). nil means both are there.
func Tools() error {
	var missing []string
	if _, err := javaBinary(); err != nil {
		missing = append(missing, "java")
	}
	if os.Getenv(ClasspathEnv) == "" {
		if _, err := exec.LookPath("mvn"); err != nil {
			missing = append(missing, "mvn")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the Kafka fixture needs %s on PATH (Java 17+ and Maven)", strings.Join(missing, " and "))
	}
	return nil
}

func javaBinary() (string, error) {
	if home := os.Getenv("JAVA_HOME"); home != "" {
		p := filepath.Join(home, "bin", "java")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("java")
}

// RepoRoot finds the oncelog checkout that holds e2e/jvm/pom.xml, walking up
// from the working directory (a Go test runs in its package directory, the
// bench in bench/).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, pomPath)); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s in any parent of the working directory", pomPath)
		}
		dir = parent
	}
}

// Classpath returns the Kafka broker's classpath: the test classpath of
// e2e/jvm (kafka_2.13, kafka-server, kafka-tools, log4j), resolved by
// `mvn dependency:build-classpath` once and cached on disk under the user's
// cache directory, keyed by the pom's contents, so only the first run (or a
// version change) pays Maven's start-up and any download.
func Classpath(repo string) (string, error) {
	if cp := os.Getenv(ClasspathEnv); cp != "" {
		return cp, nil
	}
	pom := filepath.Join(repo, pomPath)
	classpathCache.mu.Lock()
	defer classpathCache.mu.Unlock()
	if cp, ok := classpathCache.byPom[pom]; ok {
		return cp, nil
	}
	content, err := os.ReadFile(pom)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(content)
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		cacheDir = os.TempDir()
	}
	cacheFile := filepath.Join(cacheDir, "oncelog-kafkafixture", hex.EncodeToString(sum[:12])+".classpath")
	cp, err := readCachedClasspath(cacheFile)
	if err != nil {
		cp, err = resolveClasspath(pom, cacheFile)
		if err != nil {
			return "", err
		}
	}
	if classpathCache.byPom == nil {
		classpathCache.byPom = map[string]string{}
	}
	classpathCache.byPom[pom] = cp
	return cp, nil
}

// readCachedClasspath returns the cached classpath if every jar it names is
// still in the local Maven repository (someone may have cleaned ~/.m2).
func readCachedClasspath(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	cp := strings.TrimSpace(string(b))
	if cp == "" {
		return "", errors.New("empty cached classpath")
	}
	for _, entry := range filepath.SplitList(cp) {
		if _, err := os.Stat(entry); err != nil {
			return "", err
		}
	}
	return cp, nil
}

func resolveClasspath(pom, cacheFile string) (string, error) {
	mvn, err := exec.LookPath("mvn")
	if err != nil {
		return "", fmt.Errorf("resolving Kafka's classpath needs mvn: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(cacheFile), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(cacheFile), "classpath-*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	// The plugin version comes from the pom's <plugins> section.
	cmd := exec.Command(mvn, "-B", "-q", "-f", pom, "dependency:build-classpath",
		"-Dmdep.includeScope=test", "-Dmdep.outputFile="+tmp.Name())
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("mvn dependency:build-classpath on %s: %w\n%s", pom, err, out.String())
	}
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		return "", err
	}
	cp := strings.TrimSpace(string(b))
	if !strings.Contains(cp, "kafka_2.13") {
		return "", fmt.Errorf("mvn dependency:build-classpath on %s: no kafka_2.13 jar in %q", pom, cp)
	}
	// Rename is atomic, so a concurrent test process reads either no cache
	// or a whole one.
	if err := os.WriteFile(tmp.Name(), []byte(cp), 0o644); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), cacheFile); err != nil {
		return "", err
	}
	return cp, nil
}
