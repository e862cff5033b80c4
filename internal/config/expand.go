package config

import (
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// envNameRE is the rule for the NAME of a ${NAME} reference: a shell
// variable name.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expandTree replaces ${NAME} references in every scalar value under n
// (keys are left alone), before any value is converted, so that
// "workers: ${N}" works for an integer as for a string. Inline schemas are
// values of the file like any other and are expanded too; schema files are
// not.
//
// An expanded scalar loses its resolved tag so that YAML resolves it again
// from its new text: a plain ${N} holding 5 becomes an integer, as if 5
// had been written. Aliases are not followed: the node they name is
// expanded where it is written.
func (p *parser) expandTree(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			p.expandTree(c, path)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p.expandTree(c, joinPath(path, fmt.Sprintf("[%d]", i)))
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p.expandTree(n.Content[i+1], joinPath(path, n.Content[i].Value))
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		v, err := expand(n.Value, p.getenv)
		if err != nil {
			p.errorf(n, path, "%s", err)
			return
		}
		n.Value = v
		n.Tag = ""
		if p.expanded == nil {
			p.expanded = map[*yaml.Node]bool{}
		}
		p.expanded[n] = true
	}
}

// expand replaces each ${NAME} in s by getenv(NAME). "$${" stands for a
// literal "${"; any other "$" is left as it is, so that a value such as
// "pa$$word" needs no escaping. An unset (or empty) variable is an error:
// a secret that silently expands to nothing would only fail later, and
// less clearly.
func expand(s string, getenv func(string) string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			// "$${": the first "$" escapes the reference.
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ (write $${ for a literal ${)")
		}
		name := s[i+2 : i+end]
		if !envNameRE.MatchString(name) {
			return "", fmt.Errorf("invalid environment variable reference ${%s}: a name is letters, digits and underscores, not starting with a digit (write $${ for a literal ${)", name)
		}
		v := getenv(name)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(v)
		s = s[i+end+1:]
	}
}
