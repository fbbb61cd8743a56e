package audit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// declaredActions returns every Action constant this package declares
// (name → value), read from its source, so a new action cannot be left out
// of the tests below.
func declaredActions(tb testing.TB) map[string]Action {
	tb.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]Action{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			tb.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok || len(vs.Values) != len(vs.Names) {
				return true
			}
			for i, v := range vs.Values {
				call, ok := v.(*ast.CallExpr)
				if !ok || len(call.Args) != 1 {
					continue
				}
				if fn, ok := call.Fun.(*ast.Ident); !ok || fn.Name != "Action" {
					continue
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					tb.Fatal(err)
				}
				out[vs.Names[i].Name] = Action(s)
			}
			return true
		})
	}
	if len(out) == 0 {
		tb.Fatal("no Action constants found in the package source")
	}
	return out
}

// TestTenantDataActionsFlagged checks that Classify flags an admin's use of
// every action that reads tenant data, and of no other action tenantvault
// writes: IsTenantData is the one list both the boundary check and the
// tenant session (vault.Session) use.
func TestTenantDataActionsFlagged(t *testing.T) {
	declared := declaredActions(t)
	for _, a := range TenantDataActions() {
		if !slices.Contains(slices.Collect(maps.Values(declared)), a) {
			t.Errorf("TenantDataActions() has %q, which is not a declared Action constant", a)
		}
	}
	for name, a := range declared {
		t.Run(name, func(t *testing.T) {
			tenantData := slices.Contains(TenantDataActions(), a)
			if got := a.IsTenantData(); got != tenantData {
				t.Errorf("%s.IsTenantData() = %v, want %v", name, got, tenantData)
			}
			tests := []struct {
				name string
				r    Record
				want string // violation code
			}{
				{"admin", Record{Principal: PrincipalAdmin, Tenant: "acme", Action: a, Outcome: OutcomeOK}, ViolationAdminOnTenant},
				{"admin break-glass", Record{Principal: PrincipalAdmin, Tenant: "acme", Action: a, Outcome: OutcomeOK,
					Details: map[string]string{DetailBreakGlass: "incident 7"}}, ViolationBreakGlass},
				{"own tenant", Record{Principal: PrincipalTenant("acme"), Tenant: "acme", Action: a, Outcome: OutcomeOK}, ""},
			}
			for _, tt := range tests {
				want := tt.want
				if !tenantData && tt.name != "own tenant" {
					want = ""
				}
				if _, code, _ := Classify(tt.r); code != want {
					t.Errorf("Classify(%s, %s) = %q, want %q", tt.name, a, code, want)
				}
			}
		})
	}
}

func TestPrincipalKind(t *testing.T) {
	tests := []struct {
		p          Principal
		want       PrincipalKind
		wantTenant string
	}{
		{PrincipalAdmin, KindAdmin, ""},
		{PrincipalIngest, KindIngest, ""},
		{PrincipalVault, KindVault, ""},
		{PrincipalAnonymous, KindAnonymous, ""},
		{PrincipalTenant("acme"), KindTenant, "acme"},
		{"tenant:", KindTenant, ""},
		{"tenant:../x", KindTenant, "../x"},
		{"system", KindUnknown, ""},
		{"", KindUnknown, ""},
		{"Admin", KindUnknown, ""},
	}
	for _, tt := range tests {
		if got := tt.p.Kind(); got != tt.want {
			t.Errorf("Principal(%q).Kind() = %q, want %q", tt.p, got, tt.want)
		}
		tenant, ok := tt.p.Tenant()
		if ok != (tt.want == KindTenant) || tenant != tt.wantTenant {
			t.Errorf("Principal(%q).Tenant() = %q, %v, want %q, %v", tt.p, tenant, ok, tt.wantTenant, tt.want == KindTenant)
		}
	}
}
