package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tenantvault/tenantvault/audit/witness"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

// witnessFlags are audit verify's flags for witnessed checkpoints.
type witnessFlags struct {
	keys     []string
	min      int
	topic    string
	kafka    *kafkaConfigFlags
	minGiven bool
}

func (c *cli) witnessFlags(fs *pflag.FlagSet) *witnessFlags {
	w := &witnessFlags{}
	fs.Func("witness-key", "a witness's note verifier key, or @FILE; repeatable: the checkpoint must carry cosignatures by --min-cosignatures of them", func(v string) error {
		if rest, ok := strings.CutPrefix(v, "@"); ok {
			b, err := os.ReadFile(rest)
			if err != nil {
				return fmt.Errorf("witness key: %w", err)
			}
			v = strings.TrimSpace(string(b))
		}
		w.keys = append(w.keys, v)
		return nil
	})
	fs.Func("min-cosignatures", "how many of the --witness-key witnesses must have cosigned the checkpoint (default 1 with --witness-key)", func(v string) error {
		_, err := fmt.Sscanf(v, "%d", &w.min)
		if err != nil || w.min < 0 {
			return fmt.Errorf("--min-cosignatures %q is not a non-negative number", v)
		}
		w.minGiven = true
		return nil
	})
	fs.StringVar(&w.topic, "checkpoint-topic", "", "fetch the checkpoint to verify against from this Kafka topic (vaultd's --checkpoint-topic, e.g. vault.checkpoints): its last record, with the witnesses' cosignatures; reach the brokers with --brokers and the --kafka-sasl-* flags")
	w.kafka = c.kafkaFlags(fs)
	return w
}

// minCosignatures is --min-cosignatures, or its default.
func (w *witnessFlags) minCosignatures() int {
	if !w.minGiven && len(w.keys) > 0 {
		return 1
	}
	return w.min
}

// fetchCheckpoint reads the last record of --checkpoint-topic published by
// the log of verifier key (the records' key).
func (w *witnessFlags) fetchCheckpoint(ctx context.Context, key string) ([]byte, error) {
	brokers, auth, err := w.kafka.resolve()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cp, err := kafka.LastRecord(ctx, brokers, auth, w.topic, []byte(key))
	if err != nil {
		return nil, fmt.Errorf("checkpoint topic: %w", err)
	}
	if cp == nil {
		return nil, fmt.Errorf("checkpoint topic %s has no checkpoint yet", w.topic)
	}
	return cp, nil
}

// checkCosigned checks the witnesses' cosignatures on cp and says who
// cosigned.
func (c *cli) checkCosigned(cp []byte, key string, w *witnessFlags) error {
	if len(w.keys) == 0 {
		if w.minGiven && w.min > 0 {
			return errors.New("--min-cosignatures needs --witness-key")
		}
		return nil
	}
	_, have, err := witness.VerifyCosigned(cp, key, w.keys, w.minCosignatures())
	if err != nil {
		return fmt.Errorf("the checkpoint is NOT witnessed as required: %w", err)
	}
	fmt.Fprintf(c.stdout, "ok: the checkpoint is cosigned by %d of the %d witness keys given (%s)\n", len(have), len(w.keys), strings.Join(have, ", "))
	return nil
}
