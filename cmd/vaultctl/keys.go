package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

func (c *cli) tenantShred(ctx context.Context, args []string) error {
	fs := c.flags("tenant shred")
	confirm := fs.String("confirm", "", "repeat the tenant id: shredding cannot be undone")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: vaultctl tenant shred ID --confirm ID")
	}
	if *confirm != pos[0] {
		return fmt.Errorf("shredding %s destroys its keys and everything it wrote; repeat the id with --confirm %s", pos[0], pos[0])
	}
	var out any
	if err := c.call(ctx, http.MethodDelete, "/v1/tenants/"+url.PathEscape(pos[0])+"?confirm="+url.QueryEscape(*confirm), nil, &out); err != nil {
		return err
	}
	return c.print(out)
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

func (c *cli) keysRotate(ctx context.Context, args []string) error {
	fs := c.flags("keys rotate")
	rewrap := fs.Bool("rewrap", false, "re-seal the tenant's whole store under the new key, in the background")
	wait := fs.Bool("wait", false, "with --rewrap: wait until it is done, showing progress")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: vaultctl keys rotate ID [--rewrap] [--wait]")
	}
	var st keysStatus
	if err := c.call(ctx, http.MethodPost, "/v1/tenants/"+url.PathEscape(pos[0])+"/keys/rotate", map[string]bool{"rewrap": *rewrap}, &st); err != nil {
		return err
	}
	if *rewrap && *wait {
		prog := newProgress(c.stderr, 0)
		for st.Rewrap != nil && st.Rewrap.Running {
			prog.total = st.Rewrap.Total
			prog.tick(st.Rewrap.Scanned)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			if err := c.call(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(pos[0])+"/keys", nil, &st); err != nil {
				return err
			}
		}
		prog.done()
		if st.Rewrap != nil && st.Rewrap.Error != "" {
			return fmt.Errorf("rewrap failed: %s", st.Rewrap.Error)
		}
	}
	return c.print(st)
}

func (c *cli) keysList(ctx context.Context, args []string) error {
	fs := c.flags("keys list")
	usage := fs.Bool("usage", false, "count the sealed values under each key (scans the store)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: vaultctl keys list ID [--usage]")
	}
	path := "/v1/tenants/" + url.PathEscape(pos[0]) + "/keys"
	if *usage {
		path += "?usage=true"
	}
	var out any
	if err := c.call(ctx, http.MethodGet, path, nil, &out); err != nil {
		return err
	}
	return c.print(out)
}

func (c *cli) keysRetire(ctx context.Context, args []string, verb string) error {
	fs := c.flags("keys " + verb)
	key := fs.Uint64("key", 0, "the key id")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *key == 0 {
		return fmt.Errorf("usage: vaultctl keys %s ID --key K", verb)
	}
	var out any
	if err := c.call(ctx, http.MethodPost, fmt.Sprintf("/v1/tenants/%s/keys/%d/%s", url.PathEscape(pos[0]), *key, verb), nil, &out); err != nil {
		return err
	}
	return c.print(out)
}

func (c *cli) rotateMaster(ctx context.Context, args []string) error {
	fs := c.flags("keys rotate-master")
	to := fs.String("to", "", "the new master key URI (local://PATH, hcvault://..., aws-kms://..., gcp-kms://...)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("usage: vaultctl keys rotate-master --to URI")
	}
	var out any
	if err := c.call(ctx, http.MethodPost, "/v1/master-key/rotate", map[string]string{"new_master_key": *to}, &out); err != nil {
		return err
	}
	return c.print(out)
}
