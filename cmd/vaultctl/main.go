// Command vaultctl is the command-line client of tenantvault: it talks to
// vaultd's HTTP API, and publishes events to Kafka for `publish`.
//
// The server and credential come from --addr / --token, else
// TENANTVAULT_ADDR / TENANTVAULT_TOKEN, else http://127.0.0.1:8080 and the
// admin token in ./vault-data/admin.token.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `vaultctl — the tenantvault command-line client

Usage:
  vaultctl tenant create ID [--recreate] [--kafka-config FILE]
                                     create a tenant; prints its API token once (stdout) and its Kafka
                                     producer credential once (to FILE, 0600, as librdkafka properties
                                     for kcat -F; else to stderr) (--recreate: an id that was shredded,
                                     empty, with new keys)
  vaultctl tenant kafka-credential rotate ID [--kafka-config FILE]
                                     a new Kafka producer secret for the tenant; the old one stops
                                     logging in
  vaultctl tenant list               list tenants (admin)
  vaultctl tenant shred ID --confirm ID
                                     crypto-shred a tenant: destroy its keys, store, topic; prints the
                                     signed receipt
  vaultctl keys rotate ID [--rewrap] [--wait]
                                     new primary key; --rewrap re-seals the whole store under it in the
                                     background (--wait shows progress until done)
  vaultctl keys list ID [--usage]    keys, their status, sealed values per key, rewrap progress
  vaultctl keys disable ID --key K   retire an old key (refused while it still protects values)
  vaultctl keys destroy ID --key K
  vaultctl keys rotate-master --to URI
                                     re-wrap every keyset under a new master key (then restart vaultd
                                     with --master-key URI)
  vaultctl publish --tenant T --stream S --type TYPE [--data JSON] [--id ID] [--source SRC]
                  [--kafka-config FILE | --kafka-sasl-user U --kafka-sasl-password-file F]
                                     publish one CloudEvent to tenant.T.events over Kafka, as the
                                     tenant's producer
  vaultctl streams --tenant T        list a tenant's streams
  vaultctl get --tenant T STREAM     current state of a stream
  vaultctl events --tenant T STREAM  event history of a stream
  vaultctl quarantine --tenant T     rejected input of a tenant
  vaultctl audit [list] [--tenant T] [--flagged] [--action A] [--since RFC3339] [--until RFC3339] [--limit N]
                                     audit records (admin)
  vaultctl audit alerts [--tenant T] boundary violations (admin)
  vaultctl audit checkpoint [--size N]   the latest (or an older) signed checkpoint
  vaultctl audit public-key          the checkpoints' verifier key
  vaultctl audit export [--from I] [--to I]   the raw log, one canonical record per line
  vaultctl audit verify [--dir DIR | --export FILE] [--checkpoint FILE] [--public-key KEY|@FILE]
                        [--old-checkpoint FILE] [--exact]
                                     verify a log (exported, or the live vault's) against a signed
                                     checkpoint, naming the first bad record, and every shred receipt
                                     in it; records past the checkpoint are reported UNVERIFIED (with
                                     --exact they fail); with --old-checkpoint, also that the log only
                                     grew since that checkpoint
  vaultctl audit replay [--tenant T] [--since T1] [--until T2] [--flagged] [--format jsonl|csv]
                        [--dir DIR | --export FILE] [--checkpoint FILE] [--public-key KEY|@FILE]
                                     stream the matching records, verifying every record (chain,
                                     checkpoint root, re-derived flags) as it goes; records past the
                                     checkpoint are marked unverified (--exact: stop before them)

Common flags: --addr URL (TENANTVAULT_ADDR), --token TOKEN (TENANTVAULT_TOKEN),
--data-dir DIR (where admin.token is found; TENANTVAULT_DATA_DIR), --brokers for publish
(TENANTVAULT_BROKERS, default the config file's bootstrap.servers, else 127.0.0.1:9092),
--kafka-config FILE (TENANTVAULT_KAFKA_CONFIG).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "vaultctl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv}
	retire := func(how string) func(context.Context, []string) error {
		return func(ctx context.Context, args []string) error { return c.keysRetire(ctx, args, how) }
	}
	commands := map[string]func(context.Context, []string) error{
		"publish": c.publish, "streams": c.streams, "get": c.get, "events": c.events, "quarantine": c.quarantine,
		"tenant create": c.tenantCreate, "tenant list": c.tenantList, "tenant shred": c.tenantShred,
		"tenant kafka-credential": c.kafkaCredential,
		"keys rotate":             c.keysRotate, "keys list": c.keysList, "keys disable": retire("disable"),
		"keys destroy": retire("destroy"), "keys rotate-master": c.rotateMaster,
		"audit list": c.audit, "audit alerts": c.alerts, "audit checkpoint": c.auditCheckpoint,
		"audit public-key": c.auditPublicKey, "audit export": c.auditExport, "audit verify": c.auditVerify,
		"audit replay": c.auditReplay,
	}
	// Groups take a subcommand; "audit" alone, or followed by flags, lists.
	groups := map[string]string{"tenant": "create, list, shred, kafka-credential", "keys": "rotate, list, disable, destroy, rotate-master", "audit": ""}
	cmd, rest := args[0], args[1:]
	if subs, ok := groups[cmd]; ok {
		switch {
		case len(rest) > 0 && !strings.HasPrefix(rest[0], "-"):
			cmd, rest = cmd+" "+rest[0], rest[1:]
		case cmd == "audit":
			cmd = "audit list"
		default:
			return fmt.Errorf("%s: want %s", cmd, subs)
		}
	}
	if f, ok := commands[cmd]; ok {
		return f(ctx, rest)
	}
	return fmt.Errorf("unknown command %q (see vaultctl help)", cmd)
}
