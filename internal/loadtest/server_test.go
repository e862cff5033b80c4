package loadtest

import "fmt"

// serverSettings reads what the plot and the log say of the server.
type serverSettings struct {
	version    string
	autovacuum bool
	private    bool
}

func (s serverSettings) String() string {
	where := "the test server"
	if s.private {
		where = "a private cluster of default settings"
	}
	av := "autovacuum on"
	if !s.autovacuum {
		av = "autovacuum OFF"
	}
	return fmt.Sprintf("PostgreSQL %s, %s, %s", s.version, where, av)
}
