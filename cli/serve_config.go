package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// configEnvVar names the config file when --config is not given.
const configEnvVar = "ONCELOG_CONFIG"

// envVarFor is the environment variable that sets a serve flag:
// data-dir -> ONCELOG_DATA_DIR.
func envVarFor(flag string) string {
	return "ONCELOG_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// notSetting reports the flags that are not broker settings: they can't come from
// the environment or the config file.
func notSetting(name string) bool { return name == "config" || name == "help" }

// applyEnvAndFile fills every flag the command line did not set from
// ONCELOG_* variables, then from the config file: flag > env > file > default.
func applyEnvAndFile(fs *pflag.FlagSet, configFile string) error {
	if configFile == "" {
		configFile = os.Getenv(configEnvVar)
	}
	fileValues, err := readConfigFile(fs, configFile)
	if err != nil {
		return err
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || notSetting(f.Name) {
			return
		}
		env := envVarFor(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not a valid %s for --%s: %w", env, v, f.Value.Type(), f.Name, plainParseError(err)))
			}
			return
		}
		if v, ok := fileValues[f.Name]; ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %s: %q is not a valid %s: %w", configFile, f.Name, v, f.Value.Type(), plainParseError(err)))
			}
		}
	})
	return errors.Join(errs...)
}

// plainParseError drops strconv's `strconv.ParseInt: parsing "x":` prefix,
// which only repeats the value the message already quotes.
func plainParseError(err error) error {
	var numErr *strconv.NumError
	if errors.As(err, &numErr) {
		return numErr.Err
	}
	return err
}

// readConfigFile returns the settings of a YAML config file as flag values;
// an empty path means no file.
func readConfigFile(fs *pflag.FlagSet, path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("config file %s is not a YAML mapping of setting: value: %w", path, err)
	}
	values := make(map[string]string, len(doc))
	var errs []error
	for key, v := range doc {
		if f := fs.Lookup(key); f == nil || notSetting(key) {
			hint := "keys are the flag names of `oncelog serve --help`"
			if f := fs.Lookup(strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(key))); f != nil && !notSetting(f.Name) {
				hint = fmt.Sprintf("did you mean %q?", f.Name)
			}
			errs = append(errs, fmt.Errorf("config file %s: unknown setting %q (%s)", path, key, hint))
			continue
		}
		switch v := v.(type) {
		case nil: // "key:" with no value
			values[key] = ""
		case string, bool, int, int64, uint64, float64:
			values[key] = fmt.Sprint(v)
		default:
			errs = append(errs, fmt.Errorf("config file %s: %s must be a single value, not a list or mapping", path, key))
		}
	}
	return values, errors.Join(errs...)
}
