package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

func (c *cli) tenantShredCmd() *cobra.Command {
	var confirm string
	cmd := &cobra.Command{
		Use:     "shred ID --confirm ID",
		Short:   "Crypto-shred a tenant: destroy its keys, store, topic; prints the signed receipt",
		Args:    nArgs("ID"),
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if confirm != id {
				return fmt.Errorf("shredding %s destroys its keys and everything it wrote; repeat the id with --confirm %s", id, id)
			}
			return c.show(cmd.Context(), http.MethodDelete, "/v1/tenants/"+url.PathEscape(id)+"?confirm="+url.QueryEscape(confirm), nil)
		},
	}
	cmd.Flags().StringVar(&confirm, "confirm", "", "repeat the tenant id: shredding cannot be undone")
	return cmd
}

type keysStatus struct {
	Tenant string `json:"tenant"`
	Keys   []struct {
		ID      uint32 `json:"id"`
		Primary bool   `json:"primary"`
		Status  string `json:"status"`
	} `json:"keys"`
	Usage  map[string]uint64 `json:"values_per_key,omitempty"`
	Rewrap *struct {
		Running   bool   `json:"running"`
		Scanned   uint64 `json:"scanned"`
		Rewrapped uint64 `json:"rewrapped"`
		Total     uint64 `json:"total"`
		Done      bool   `json:"done"`
		Error     string `json:"error,omitempty"`
	} `json:"rewrap,omitempty"`
}

func (c *cli) keysRotateCmd() *cobra.Command {
	var rewrap, wait bool
	cmd := &cobra.Command{
		Use:     "rotate ID [--rewrap] [--wait]",
		Short:   "New primary key; --rewrap re-seals the whole store under it in the background",
		Args:    nArgs("ID"),
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.keysRotate(cmd.Context(), args[0], rewrap, wait)
		},
	}
	cmd.Flags().BoolVar(&rewrap, "rewrap", false, "re-seal the tenant's whole store under the new key, in the background")
	cmd.Flags().BoolVar(&wait, "wait", false, "with --rewrap: wait until it is done, showing progress")
	return cmd
}

func (c *cli) keysRotate(ctx context.Context, id string, rewrap, wait bool) error {
	b, err := c.adminRequest(ctx, http.MethodPost, "/v1/tenants/"+url.PathEscape(id)+"/keys/rotate", map[string]bool{"rewrap": rewrap})
	if err != nil {
		return err
	}
	var st keysStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	if rewrap && wait {
		prog := newProgress(c.stderr, 0, "")
		for st.Rewrap != nil && st.Rewrap.Running {
			prog.total = st.Rewrap.Total
			prog.what = rewrapWhat(st.Rewrap.Rewrapped)
			prog.tick(st.Rewrap.Scanned)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			if b, err = c.adminRequest(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(id)+"/keys", nil); err != nil {
				return err
			}
			if err := json.Unmarshal(b, &st); err != nil {
				return err
			}
		}
		prog.done()
		if st.Rewrap != nil && st.Rewrap.Error != "" {
			return fmt.Errorf("rewrap failed: %s", st.Rewrap.Error)
		}
	}
	return c.print(b)
}

// rewrapWhat is what the rewrap progress counts: the sealed values
// scanned (of the store's total), and how many of them were rewrapped.
func rewrapWhat(rewrapped uint64) string {
	return fmt.Sprintf("sealed values scanned, %d records rewrapped", rewrapped)
}

func (c *cli) keysListCmd() *cobra.Command {
	var usage bool
	cmd := &cobra.Command{
		Use:     "list ID [--usage]",
		Short:   "Keys, their status, sealed values per key, rewrap progress",
		Args:    nArgs("ID"),
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/tenants/" + url.PathEscape(args[0]) + "/keys"
			if usage {
				path += "?usage=true"
			}
			return c.show(cmd.Context(), http.MethodGet, path, nil)
		},
	}
	cmd.Flags().BoolVar(&usage, "usage", false, "count the sealed values under each key (scans the store)")
	return cmd
}

func (c *cli) keysRetireCmd(verb string) *cobra.Command {
	var key uint64
	short := "Retire an old key (refused while it still protects values)"
	if verb == "destroy" {
		short = "Destroy an old key (refused while it still protects values)"
	}
	cmd := &cobra.Command{
		Use:     verb + " ID --key K",
		Short:   short,
		Args:    nArgs("ID"),
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == 0 {
				return fmt.Errorf("%s: --key K is required (usage: %s)", cmd.CommandPath(), cmd.UseLine())
			}
			return c.show(cmd.Context(), http.MethodPost, fmt.Sprintf("/v1/tenants/%s/keys/%d/%s", url.PathEscape(args[0]), key, verb), nil)
		},
	}
	cmd.Flags().Uint64Var(&key, "key", 0, "the key id")
	return cmd
}

func (c *cli) rotateMasterCmd() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:     "rotate-master --to URI",
		Short:   "Re-wrap every keyset under a new master key (then restart vaultd with --master-key URI)",
		Args:    cobra.NoArgs,
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("%s: --to URI is required", cmd.CommandPath())
			}
			return c.show(cmd.Context(), http.MethodPost, "/v1/master-key/rotate", map[string]string{"new_master_key": to})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the new master key URI (local://PATH, hcvault://..., aws-kms://..., gcp-kms://...)")
	return cmd
}
