// Command vaultctl is the command-line client of tenantvault: it talks to
// vaultd's HTTP API, and publishes events to Kafka for `publish`.
//
// The server comes from --addr, else TENANTVAULT_ADDR, else
// http://127.0.0.1:8080 (an address without a scheme is taken as http://).
// Admin commands use --token / TENANTVAULT_TOKEN, else the admin token in
// <data-dir>/admin.token; commands that read a tenant's data use only
// --token / TENANTVAULT_TOKEN, and the admin token only with
// --break-glass REASON. Global flags go anywhere on the command line.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tenantvault/tenantvault/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vaultctl:", err)
		os.Exit(1)
	}
}

// run is vaultctl with args, writing to stdout and stderr, reading the
// environment through getenv: main's body, and the tests' entry point.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv}
	root := c.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(strings.NewReader(""))
	return root.ExecuteContext(ctx)
}

func (c *cli) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vaultctl",
		Short: "vaultctl — the tenantvault command-line client",
		Long: `vaultctl — the tenantvault command-line client.

It talks to vaultd's HTTP API (--addr, TENANTVAULT_ADDR), and to Kafka as a
tenant's producer for publish. Admin commands use --token / TENANTVAULT_TOKEN,
else the admin token in <data-dir>/admin.token. Commands that read a tenant's
data (streams, get, events, quarantine) need the tenant's token: --token or
TENANTVAULT_TOKEN; they use the admin token only with --break-glass REASON.
Global flags may be given anywhere on the command line.`,
		Version:       buildinfo.Read().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("vaultctl {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&c.addr, "addr", "", "vaultd API base URL (TENANTVAULT_ADDR; default "+defaultAddr+"; no scheme: http://)")
	pf.StringVar(&c.token, "token", "", "bearer token (TENANTVAULT_TOKEN; admin commands default to the admin token in <data-dir>/admin.token)")
	pf.StringVar(&c.dataDir, "data-dir", "", "vaultd data directory, to find admin.token (TENANTVAULT_DATA_DIR; default "+defaultDataDir+")")
	pf.StringVar(&c.breakGlass, "break-glass", "", "read tenant data with the admin token, for REASON (sent to the vault, recorded in the audit log, raises a break_glass alert)")
	pf.StringVarP(&c.output, "output", "o", outputJSON, "output format of API answers: json (the server's bytes, indented), yaml or table")

	tenant := group("tenant", "Create, list, shred, export, import, move tenants; rotate their Kafka credential (admin)")
	kc := group("kafka-credential", "A tenant's Kafka producer credential (admin)")
	kc.AddCommand(c.kafkaCredentialRotateCmd())
	tenant.AddCommand(c.tenantCreateCmd(), c.tenantListCmd(), c.tenantShredCmd(), kc,
		c.tenantImportKeyCmd(), c.tenantExportCmd(), c.tenantImportCmd(), c.tenantMoveCmd())

	keys := group("keys", "A tenant's keys: rotate, list, disable, destroy; the master key (admin)")
	keys.AddCommand(c.keysRotateCmd(), c.keysListCmd(), c.keysRetireCmd("disable"), c.keysRetireCmd("destroy"), c.rotateMasterCmd())

	audit := c.auditListCmd("audit", "Audit records (admin); with no subcommand, lists them")
	audit.AddCommand(c.auditListCmd("list", "Audit records (admin)"), c.alertsCmd(), c.auditCheckpointCmd(), c.auditPublicKeyCmd(),
		c.auditExportCmd(), c.auditVerifyCmd(), c.auditReplayCmd())

	cluster := group("cluster", "A cluster of vaultd nodes on one Kafka cluster (admin)")
	cluster.AddCommand(c.clusterStatusCmd())

	root.AddCommand(tenant, keys, audit, cluster, c.publishCmd(), c.streamsCmd(), c.getCmd(), c.eventsCmd(), c.quarantineCmd(), c.versionCmd())
	return root
}

// group is a command that only holds subcommands: alone it says which it
// wants, with a wrong one it suggests the nearest.
func group(name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " COMMAND",
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%s needs a subcommand: %s (see %s --help)", cmd.CommandPath(), subcommands(cmd), cmd.CommandPath())
			}
			return unknownSubcommand(cmd, args[0])
		},
	}
}

func subcommands(cmd *cobra.Command) string {
	var names []string
	for _, s := range cmd.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return strings.Join(names, ", ")
}

// unknownSubcommand is the error for cmd followed by name, with cobra's
// did-you-mean suggestions.
func unknownSubcommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra sets it only on the root
	}
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return fmt.Errorf("%s\n\nRun '%s --help' for usage", msg, cmd.CommandPath())
}

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "The version of vaultctl",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(c.stdout, "vaultctl %s\n", buildinfo.Read())
			return err
		},
	}
}

// nArgs wants exactly the positional arguments named in names.
func nArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		return fmt.Errorf("%s wants %s (usage: %s)", cmd.CommandPath(), strings.Join(names, " "), cmd.UseLine())
	}
}
