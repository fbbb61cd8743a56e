package main

import (
	"net/http"

	"github.com/spf13/cobra"
)

// clusterStatusCmd shows a cluster's nodes and which node holds each
// tenant (GET /v1/cluster).
func (c *cli) clusterStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "The cluster's nodes and the node that holds each tenant now (admin)",
		Args:    cobra.NoArgs,
		PreRunE: c.checkOutput,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.show(cmd.Context(), http.MethodGet, "/v1/cluster", nil)
		},
	}
}
