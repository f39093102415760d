package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Profiles, like rpk's: named connection settings (brokers, TLS, SASL) for
// the client commands, in one YAML file. Secrets are never stored: a
// profile names the environment variable or the file the SASL password
// comes from, and nothing prints it.

const (
	profileEnv      = "ONCELOG_PROFILE"      // the profile to use instead of the current one
	profileFileEnv  = "ONCELOG_PROFILE_FILE" // where the profiles live
	profileFileName = "profiles.yaml"
)

// profile is one named set of connection settings.
type profile struct {
	Brokers       []string `yaml:"brokers,omitempty"`
	SASLMechanism string   `yaml:"sasl_mechanism,omitempty"`
	SASLUser      string   `yaml:"sasl_user,omitempty"`
	// Where the SASL password comes from: an environment variable or a
	// file (its first line); never the password itself.
	SASLPasswordEnv  string `yaml:"sasl_password_env,omitempty"`
	SASLPasswordFile string `yaml:"sasl_password_file,omitempty"`
	TLS              bool   `yaml:"tls,omitempty"`
	TLSCAFile        string `yaml:"tls_ca_file,omitempty"`
	TLSCertFile      string `yaml:"tls_cert_file,omitempty"`
	TLSKeyFile       string `yaml:"tls_key_file,omitempty"`
}

type profileFile struct {
	Current  string              `yaml:"current,omitempty"`
	Profiles map[string]*profile `yaml:"profiles"`
}

// profilePath is $ONCELOG_PROFILE_FILE, else oncelog/profiles.yaml in the
// user's config directory ($XDG_CONFIG_HOME or ~/.config).
func profilePath() (string, error) {
	if p := os.Getenv(profileFileEnv); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory for profiles (%v): set %s", err, profileFileEnv)
	}
	return filepath.Join(dir, "oncelog", profileFileName), nil
}

func loadProfiles() (*profileFile, string, error) {
	path, err := profilePath()
	if err != nil {
		return nil, "", err
	}
	pf := &profileFile{Profiles: map[string]*profile{}}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return pf, path, nil
	}
	if err != nil {
		return nil, path, fmt.Errorf("read profiles: %w", err)
	}
	if err := yaml.Unmarshal(raw, pf); err != nil {
		return nil, path, fmt.Errorf("profiles file %s is not valid YAML: %w", path, err)
	}
	if pf.Profiles == nil {
		pf.Profiles = map[string]*profile{}
	}
	return pf, path, nil
}

// save writes the file atomically, readable by its owner only (it names
// where secrets are, and the user names and brokers are nobody else's).
func (pf *profileFile) save(path string) error {
	raw, err := yaml.Marshal(pf)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("write profiles: %w", err)
	}
	return os.Rename(tmp, path)
}

// activeProfile is the profile a client command uses: --profile, else
// $ONCELOG_PROFILE, else the current one; nil when there is none.
func activeProfile(fs *pflag.FlagSet) (*profile, string, error) {
	name := ""
	if f := fs.Lookup("profile"); f != nil {
		name = f.Value.String()
	}
	explicit := name != ""
	if name == "" {
		name, explicit = os.Getenv(profileEnv), os.Getenv(profileEnv) != ""
	}
	pf, path, err := loadProfiles()
	if err != nil {
		if explicit {
			return nil, "", err
		}
		return nil, "", nil // a broken file must not break commands that do not ask for it
	}
	if name == "" {
		name = pf.Current
	}
	if name == "" {
		return nil, "", nil
	}
	p, ok := pf.Profiles[name]
	if !ok {
		return nil, "", usageErrorf("profile %q does not exist in %s: see `oncelog profile list`", name, path)
	}
	return p, name, nil
}

// password reads the SASL password from where the profile says.
func (p *profile) password() (string, error) {
	switch {
	case p.SASLPasswordEnv != "":
		v, ok := os.LookupEnv(p.SASLPasswordEnv)
		if !ok {
			return "", usageErrorf("the profile takes its SASL password from $%s, which is not set", p.SASLPasswordEnv)
		}
		return v, nil
	case p.SASLPasswordFile != "":
		raw, err := os.ReadFile(p.SASLPasswordFile)
		if err != nil {
			return "", usageErrorf("the profile's SASL password file: %v", err)
		}
		line, _, _ := strings.Cut(string(raw), "\n")
		return strings.TrimRight(line, "\r"), nil
	}
	return "", nil
}

// applyProfile fills in the connection settings nobody set on the command
// line or in the environment from the active profile: flag > environment >
// profile > default.
func applyProfile(fs *pflag.FlagSet) error {
	p, _, err := activeProfile(fs)
	if err != nil || p == nil {
		return err
	}
	envFor := map[string]string{"brokers": brokersEnv, "sasl-mechanism": "ONCELOG_SASL_MECHANISM", "sasl-user": "ONCELOG_SASL_USER", "sasl-password": saslPasswordEnv}
	set := func(flag, value string) error {
		f := fs.Lookup(flag)
		if f == nil || f.Changed || value == "" {
			return nil
		}
		if env := envFor[flag]; env != "" && os.Getenv(env) != "" {
			return nil
		}
		if err := f.Value.Set(value); err != nil {
			return usageErrorf("profile setting for --%s: %v", flag, err)
		}
		f.Changed = true // the environment must not override it any more
		return nil
	}
	if len(p.Brokers) > 0 {
		if f := fs.Lookup("brokers"); f != nil && !f.Changed && os.Getenv(brokersEnv) == "" {
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				_ = sv.Replace(p.Brokers)
				f.Changed = true
			}
		}
	}
	pass := ""
	if p.SASLUser != "" {
		if pass, err = p.password(); err != nil {
			return err
		}
	}
	tls := ""
	if p.TLS {
		tls = "true"
	}
	for _, kv := range [][2]string{
		{"sasl-mechanism", p.SASLMechanism}, {"sasl-user", p.SASLUser}, {"sasl-password", pass},
		{"tls", tls}, {"tls-ca-file", p.TLSCAFile}, {"tls-cert-file", p.TLSCertFile}, {"tls-key-file", p.TLSKeyFile},
	} {
		if err := set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

func newProfileCmd() *cobra.Command {
	cmd := newParentCmd("profile", "Create, use and list named connection profiles (brokers, TLS, SASL)",
		`Profiles keep the connection settings of the client commands, like rpk's:
brokers, TLS files and the SASL user, with the password taken from an
environment variable or a file (never stored in the profile, never printed).

The current profile applies to every client command; --profile NAME or
$`+profileEnv+` picks another. A flag or an environment variable still beats the
profile. Profiles live in $`+profileFileEnv+`, default
~/.config/oncelog/`+profileFileName+` (mode 0600).`)
	cmd.AddCommand(newProfileCreateCmd(), newProfileUseCmd(), newProfileListCmd(), newProfileDeleteCmd())
	return cmd
}

func newProfileCreateCmd() *cobra.Command {
	var (
		p   profile
		use bool
	)
	cmd := &cobra.Command{
		Use:   "create <name> --brokers host:port[,...] [--sasl-user U --sasl-password-env VAR] [--tls ...]",
		Short: "Create or replace a profile",
		Example: `  oncelog profile create local --brokers 127.0.0.1:9092 --use
  oncelog profile create prod --brokers b1:9094,b2:9094 --tls --tls-ca-file ca.pem \
      --sasl-mechanism SCRAM-SHA-512 --sasl-user app --sasl-password-env PROD_KAFKA_PASSWORD`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if strings.ContainsAny(name, " \t\n/") {
				return usageErrorf("profile name %q: no spaces or slashes", name)
			}
			p.Brokers = splitList(strings.Join(p.Brokers, ","))
			if len(p.Brokers) == 0 {
				return usageErrorf("--brokers is required: the profile's seed brokers")
			}
			if p.SASLPasswordEnv != "" && p.SASLPasswordFile != "" {
				return usageErrorf("--sasl-password-env and --sasl-password-file exclude each other")
			}
			if p.SASLUser == "" && (p.SASLPasswordEnv != "" || p.SASLPasswordFile != "" || p.SASLMechanism != "") {
				return usageErrorf("the SASL settings need --sasl-user")
			}
			if p.SASLUser != "" && p.SASLPasswordEnv == "" && p.SASLPasswordFile == "" {
				return usageErrorf("--sasl-user needs --sasl-password-env VAR or --sasl-password-file FILE (profiles never hold the password)")
			}
			if (p.TLSCertFile == "") != (p.TLSKeyFile == "") {
				return usageErrorf("--tls-cert-file and --tls-key-file go together")
			}
			if p.TLSCAFile != "" || p.TLSCertFile != "" {
				p.TLS = true
			}
			pf, path, err := loadProfiles()
			if err != nil {
				return err
			}
			_, replaced := pf.Profiles[name]
			pf.Profiles[name] = &p
			if use || pf.Current == "" {
				pf.Current = name
			}
			if err := pf.save(path); err != nil {
				return err
			}
			verb := "created"
			if replaced {
				verb = "replaced"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s profile %q in %s", verb, name, path)
			if pf.Current == name {
				fmt.Fprint(cmd.OutOrStdout(), " (current)")
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&p.Brokers, "brokers", nil, "comma-separated host:port seed brokers")
	f.StringVar(&p.SASLMechanism, "sasl-mechanism", "", "SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (default SCRAM-SHA-512 with --sasl-user)")
	f.StringVar(&p.SASLUser, "sasl-user", "", "SASL user name")
	f.StringVar(&p.SASLPasswordEnv, "sasl-password-env", "", "environment variable that holds the SASL password when a command runs")
	f.StringVar(&p.SASLPasswordFile, "sasl-password-file", "", "file whose first line is the SASL password")
	f.BoolVar(&p.TLS, "tls", false, "connect with TLS")
	f.StringVar(&p.TLSCAFile, "tls-ca-file", "", "PEM CA certificates to verify the brokers with")
	f.StringVar(&p.TLSCertFile, "tls-cert-file", "", "PEM client certificate (mTLS)")
	f.StringVar(&p.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	f.BoolVar(&use, "use", false, "make it the current profile (the first profile always is)")
	return cmd
}

func newProfileUseCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "use <name>",
		Short:             "Make a profile the current one",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: completeProfiles,
		RunE: func(cmd *cobra.Command, args []string) error {
			pf, path, err := loadProfiles()
			if err != nil {
				return err
			}
			if _, ok := pf.Profiles[args[0]]; !ok {
				return usageErrorf("profile %q does not exist: %s", args[0], profileNames(pf))
			}
			pf.Current = args[0]
			if err := pf.save(path); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "using profile %q\n", args[0])
			return err
		},
	}
}

func newProfileDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "delete <name>",
		Short:             "Delete a profile",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: completeProfiles,
		RunE: func(cmd *cobra.Command, args []string) error {
			pf, path, err := loadProfiles()
			if err != nil {
				return err
			}
			if _, ok := pf.Profiles[args[0]]; !ok {
				return usageErrorf("profile %q does not exist: %s", args[0], profileNames(pf))
			}
			delete(pf.Profiles, args[0])
			if pf.Current == args[0] {
				pf.Current = ""
			}
			if err := pf.save(path); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "deleted profile %q\n", args[0])
			return err
		},
	}
}

// profileRow is `profile list --output json`: what a profile says, with the
// password's source but never the password.
type profileRow struct {
	Name             string   `json:"name"`
	Current          bool     `json:"current"`
	Brokers          []string `json:"brokers"`
	SASLMechanism    string   `json:"sasl_mechanism,omitempty"`
	SASLUser         string   `json:"sasl_user,omitempty"`
	SASLPasswordFrom string   `json:"sasl_password_from,omitempty"`
	TLS              bool     `json:"tls"`
}

func newProfileListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the profiles (the current one marked *)",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageErrorf("--output %q: use text or json", output)
			}
			pf, _, err := loadProfiles()
			if err != nil {
				return err
			}
			rows := []profileRow{}
			for _, name := range sortedProfileNames(pf) {
				p := pf.Profiles[name]
				row := profileRow{Name: name, Current: name == pf.Current, Brokers: nonNil(p.Brokers), SASLMechanism: p.SASLMechanism, SASLUser: p.SASLUser, TLS: p.TLS}
				if p.SASLUser != "" && row.SASLMechanism == "" {
					row.SASLMechanism = "SCRAM-SHA-512"
				}
				switch {
				case p.SASLPasswordEnv != "":
					row.SASLPasswordFrom = "$" + p.SASLPasswordEnv
				case p.SASLPasswordFile != "":
					row.SASLPasswordFrom = p.SASLPasswordFile
				}
				rows = append(rows, row)
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			return printProfiles(cmd.OutOrStdout(), rows)
		},
	}
	cmd.Flags().StringVar(&output, "output", "text", "output format: text for people, json for scripts")
	return cmd
}

func printProfiles(w io.Writer, rows []profileRow) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no profiles: create one with `oncelog profile create NAME --brokers host:port`")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "\tNAME\tBROKERS\tTLS\tSASL\tPASSWORD FROM")
	for _, r := range rows {
		mark := ""
		if r.Current {
			mark = "*"
		}
		sasl := "-"
		if r.SASLUser != "" {
			sasl = r.SASLMechanism + " as " + r.SASLUser
		}
		from := r.SASLPasswordFrom
		if from == "" {
			from = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\n", mark, r.Name, strings.Join(r.Brokers, ","), r.TLS, sasl, from)
	}
	return tw.Flush()
}

func sortedProfileNames(pf *profileFile) []string {
	names := make([]string, 0, len(pf.Profiles))
	for n := range pf.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func profileNames(pf *profileFile) string {
	names := sortedProfileNames(pf)
	if len(names) == 0 {
		return "there are no profiles yet"
	}
	return "the profiles are " + strings.Join(names, ", ")
}

func completeProfiles(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	pf, _, err := loadProfiles()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return sortedProfileNames(pf), cobra.ShellCompDirectiveNoFileComp
}
