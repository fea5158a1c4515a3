package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/gqllimit"
	"github.com/jobqueue/jobqueue/internal/httpapi"
	"github.com/jobqueue/jobqueue/internal/tracing"
)

// config is everything the server reads from its environment and flags.
// Every setting has an environment variable and a flag of the same name in
// lowercase with dashes; a flag wins over the variable.
type config struct {
	DatabaseURL     string
	InstanceID      string
	LeaseDuration   time.Duration
	PollInterval    time.Duration
	Port            int
	Workers         int
	QueueCapacity   int
	ProcessingTime  time.Duration
	ShutdownTimeout time.Duration
	// ShutdownDrainDelay is how long the server goes on serving, not
	// ready, before it closes its port at shutdown.
	ShutdownDrainDelay time.Duration
	JobTimeout         time.Duration
	MaxAttempts        int
	ErrorHistory       int
	RetryBackoff       time.Duration
	RetryBackoffMax    time.Duration
	HandlersFile       string
	// PausedTypes are paused at start (PAUSED_TYPES).
	PausedTypes    []string
	PeriodicFile   string
	MaxPeriodic    int
	Retention      time.Duration
	RetentionSweep time.Duration
	LogFormat      string
	LogLevel       slog.Level

	MaxBodyBytes            int64
	MaxPayloadBytes         int
	RESTListMax             int
	MaxSubscriptionsPerConn int
	ComplexityLimit         int
	MaxQueryTokens          int
	MaxQueryDepth           int
	MaxQueryAliases         int
	MaxQueryDirectives      int
	MaxQuerySpreads         int
	MaxQueryFields          int
	MaxJobsPerRequest       int
	WSReadLimit             int64
	WSKeepAlive             time.Duration
	WSInitTimeout           time.Duration
	WSWriteTimeout          time.Duration
	SubscriberBuffer        int
	SubscriberMaxBacklog    int
	DebugAddr               string
	MaxConnections          int
	BodyTimeout             time.Duration
	RequestTimeout          time.Duration
	MaxResponseBytes        int64
	HeavyComplexity         int
	WriteTimeout            time.Duration
	MaxInFlightResponses    int64
	HeavyQueries            int

	Auth          auth.Mode
	APITokensFile string
	JWTJWKSURL    string
	JWTSecret     string
	JWTIssuer     string
	JWTAudience   string
	JWTRoleClaim  string

	// CORSOrigins is CORS_ALLOWED_ORIGINS as read; its default depends
	// on AUTH (see origins).
	CORSOrigins    httpapi.Origins
	CORSOriginsSet bool
	AllowedHosts   string
	RateLimit      float64
	RateBurst      int

	Metrics         bool
	MetricsAddr     string
	MetricsMaxTypes int

	// Tracing is the OpenTelemetry settings (OTEL_*); InstanceID is
	// filled in by serve.
	Tracing tracing.Config
}

// origins are the web origins allowed to call the API: CORS_ALLOWED_ORIGINS,
// or by default any origin with authentication on (a foreign page cannot
// obtain the bearer credential) and none with it off (any page a user
// opens could otherwise drive their server).
func (c config) origins() httpapi.Origins {
	switch {
	case c.CORSOriginsSet:
		return c.CORSOrigins
	case c.Auth.Enabled():
		return httpapi.AnyOrigin()
	}
	return httpapi.Origins{}
}

// setting is one configuration entry: its environment name, help text and
// a parser that stores the value in the config.
type setting struct {
	env, def, help string
	set            func(c *config, v string) error
}

func settings() []setting {
	return []setting{
		{"DATABASE_URL", "memory:", "where jobs are kept: memory: (lost on exit), sqlite:PATH (a file, created when missing; one server process) or postgres://… (shared by many server processes)", func(c *config, v string) error {
			if _, _, err := parseDatabaseURL(v); err != nil {
				return err
			}
			c.DatabaseURL = v
			return nil
		}},
		{"INSTANCE_ID", "", "name of this process in job leases and logs; must be unique among processes sharing a database (default: host name, process id and a random suffix)", func(c *config, v string) error {
			c.InstanceID = v
			return nil
		}},
		{"LEASE_DURATION", "30s", "how long a claimed job stays leased to this process without a heartbeat (renewed every third of it); a process silent for longer is taken for dead and its jobs are run again", func(c *config, v string) error {
			if err := durationInto(func(c *config) *time.Duration { return &c.LeaseDuration })(c, v); err != nil {
				return err
			}
			if c.LeaseDuration < time.Second {
				return fmt.Errorf("must be at least 1s (heartbeats go every third of it), got %s", v)
			}
			return nil
		}},
		{"POLL_INTERVAL", "5s", "PostgreSQL only: how often an idle process looks for runnable jobs even without a notification (a safety net for missed LISTEN/NOTIFY), and reads the periodic jobs' definitions again (changes made through other processes)", durationInto(func(c *config) *time.Duration { return &c.PollInterval })},
		{"PORT", "8080", "TCP port to listen on (0 picks a free one)", intInto(func(c *config) *int { return &c.Port }, 0)},
		{"WORKERS", "1", "jobs processed at once", intInto(func(c *config) *int { return &c.Workers }, 1)},
		{"QUEUE_CAPACITY", "100", "most jobs claimed from the store at once (never more than workers are idle; jobs wait in the store, never lost)", intInto(func(c *config) *int { return &c.QueueCapacity }, 1)},
		{"PROCESSING_TIME", "1s", "how long the simulated handler works on a job (payload durationMs overrides it)", durationInto(func(c *config) *time.Duration { return &c.ProcessingTime })},
		{"SHUTDOWN_TIMEOUT", "10s", "on SIGINT/SIGTERM, how long running jobs may finish before they are cancelled and returned to pending", durationInto(func(c *config) *time.Duration { return &c.ShutdownTimeout })},
		{"SHUTDOWN_DRAIN_DELAY", "0s", "on SIGINT/SIGTERM, how long the server goes on serving with GET /ready answering 503 before it closes its port, so a load balancer that polls /ready stops sending it requests first (e.g. 10s behind one that checks every 5s)", durationInto(func(c *config) *time.Duration { return &c.ShutdownDrainDelay })},
		{"JOB_TIMEOUT", "5m", "bound of each attempt of a job created without timeoutSeconds", durationInto(func(c *config) *time.Duration { return &c.JobTimeout })},
		{"HANDLERS_FILE", "", `JSON file mapping job types to webhook URLs ({"email": {"url": "http://…"}}); when set, only those types are accepted and the simulated handler is off`, func(c *config, v string) error {
			c.HandlersFile = v
			return nil
		}},
		{"PAUSED_TYPES", "", "job types to pause at start (comma-separated, e.g. email,sms) when the store does not know them yet (no stored controls, no jobs): their pending jobs wait until resumeJobType; the pause is stored, and later changes through the API win (a known type is left as it is, with a warning)", func(c *config, v string) error {
			c.PausedTypes = nil
			for t := range strings.SplitSeq(v, ",") {
				if t = strings.TrimSpace(t); t == "" {
					continue
				}
				if err := domain.ValidateType(t); err != nil {
					return fmt.Errorf("%q: %v", t, err)
				}
				c.PausedTypes = append(c.PausedTypes, t)
			}
			return nil
		}},
		{"PERIODIC_FILE", "", "YAML or JSON file of periodic jobs (periodic: [{name, schedule, timezone, paused, job: {type, payload, …}}]) applied at start; the API may not change them, and those of an earlier version of the file that it no longer holds are deleted", stringInto(func(c *config) *string { return &c.PeriodicFile })},
		{"MAX_PERIODIC_JOBS", "1000", "most periodic jobs that may be defined: a new one past it is BAD_USER_INPUT on name, a PERIODIC_FILE holding more is refused at start", intInto(func(c *config) *int { return &c.MaxPeriodic }, 1)},
		{"MAX_ATTEMPTS", "3", "attempts of a job created without maxAttempts (1 means no retry)", intInto(func(c *config) *int { return &c.MaxAttempts }, 1)},
		{"ERROR_HISTORY", fmt.Sprint(domain.DefaultErrorHistory), fmt.Sprintf("failures kept in each job's errors, the newest (1 to %d); attempts still counts them all", domain.MaxErrorHistory), func(c *config, v string) error {
			if err := intInto(func(c *config) *int { return &c.ErrorHistory }, 1)(c, v); err != nil {
				return err
			}
			if c.ErrorHistory > domain.MaxErrorHistory {
				return fmt.Errorf("must be at most %d, got %d", domain.MaxErrorHistory, c.ErrorHistory)
			}
			return nil
		}},
		{"RETRY_BACKOFF", "1s", "delay before a failed job's second attempt; doubled for each further attempt, with jitter", durationInto(func(c *config) *time.Duration { return &c.RetryBackoff })},
		{"RETRY_BACKOFF_MAX", "1h", "cap of the retry delay", durationInto(func(c *config) *time.Duration { return &c.RetryBackoffMax })},
		{"RETENTION", "168h", "finished jobs older than this are deleted in the background; 0 keeps them forever", durationInto(func(c *config) *time.Duration { return &c.Retention })},
		{"RETENTION_SWEEP", "1m", "how often finished jobs past RETENTION are looked for", durationInto(func(c *config) *time.Duration { return &c.RetentionSweep })},
		{"LOG_FORMAT", "text", "log format: text or json", func(c *config, v string) error {
			if v != "text" && v != "json" {
				return fmt.Errorf("want text or json, got %q", v)
			}
			c.LogFormat = v
			return nil
		}},
		{"LOG_LEVEL", "info", "log level: debug (includes every job transition), info, warn or error", func(c *config, v string) error {
			return c.LogLevel.UnmarshalText([]byte(v))
		}},
		{"MAX_BODY_BYTES", "1048576", "largest HTTP request body; larger ones get 413", intInto(func(c *config) *int64 { return &c.MaxBodyBytes }, 1)},
		{"MAX_PAYLOAD_BYTES", "65536", "largest job payload, once encoded", intInto(func(c *config) *int { return &c.MaxPayloadBytes }, 1)},
		{"REST_LIST_MAX", "1000", "most jobs GET /jobs returns (and the cap of ?limit=)", intInto(func(c *config) *int { return &c.RESTListMax }, 1)},
		{"MAX_SUBSCRIPTIONS_PER_CONN", "100", "most subscriptions one websocket connection may hold", intInto(func(c *config) *int { return &c.MaxSubscriptionsPerConn }, 1)},
		{"COMPLEXITY_LIMIT", "25000", "largest GraphQL operation complexity (jobs counts first × fields; payload and result 1 per 4 KiB of MAX_PAYLOAD_BYTES; introspection what it returns)", intInto(func(c *config) *int { return &c.ComplexityLimit }, 1)},
		{"MAX_QUERY_TOKENS", "15000", "most lexical tokens in a GraphQL document (QUERY_TOO_LARGE beyond)", intInto(func(c *config) *int { return &c.MaxQueryTokens }, 1)},
		{"MAX_QUERY_DEPTH", "25", "deepest nesting of selection sets in a GraphQL operation, through fragments (QUERY_TOO_LARGE beyond)", intInto(func(c *config) *int { return &c.MaxQueryDepth }, 1)},
		{"MAX_QUERY_ALIASES", "200", "most aliased fields written in a GraphQL document (QUERY_TOO_LARGE beyond)", intInto(func(c *config) *int { return &c.MaxQueryAliases }, 1)},
		{"MAX_QUERY_DIRECTIVES", "200", "most directives written in a GraphQL document (QUERY_TOO_LARGE beyond)", intInto(func(c *config) *int { return &c.MaxQueryDirectives }, 1)},
		{"MAX_QUERY_FRAGMENT_SPREADS", "200", "most fragment spreads written in a GraphQL document (QUERY_TOO_LARGE beyond)", intInto(func(c *config) *int { return &c.MaxQuerySpreads }, 1)},
		{"MAX_QUERY_FIELDS", "1000", "most fields a GraphQL operation or fragment selects once its fragments are expanded (QUERY_TOO_LARGE beyond)", intInto(func(c *config) *int { return &c.MaxQueryFields }, 1)},
		{"MAX_JOBS_PER_REQUEST", "100", "most jobs one GraphQL mutation may create: its createJob fields (aliases and fragments included) plus the inputs of its createJobs fields (TOO_MANY_JOBS beyond; none is created)", intInto(func(c *config) *int { return &c.MaxJobsPerRequest }, 1)},
		{"WS_READ_LIMIT", "65536", "largest websocket message from a client; larger ones close the connection", intInto(func(c *config) *int64 { return &c.WSReadLimit }, 1)},
		{"WS_KEEPALIVE", "15s", "interval of websocket keep-alive messages", durationInto(func(c *config) *time.Duration { return &c.WSKeepAlive })},
		{"WS_INIT_TIMEOUT", "10s", "time a websocket client has to send connection_init", durationInto(func(c *config) *time.Duration { return &c.WSInitTimeout })},
		{"WS_WRITE_TIMEOUT", "10s", "deadline of every websocket write; a client that stops reading is dropped after it", durationInto(func(c *config) *time.Duration { return &c.WSWriteTimeout })},
		{"SUBSCRIBER_BUFFER", "32", "job changes buffered per subscription before its backlog is used", intInto(func(c *config) *int { return &c.SubscriberBuffer }, 1)},
		{"DEBUG_ADDR", "", "when set (e.g. 127.0.0.1:6060), serve net/http/pprof there; keep it private", func(c *config, v string) error {
			c.DebugAddr = v
			return nil
		}},
		{"MAX_CONNECTIONS", "0", "most client connections open at once (websockets included); one more gets 503, except GET /health; 0: nine tenths of the open-file limit", intInto(func(c *config) *int { return &c.MaxConnections }, 0)},
		{"BODY_TIMEOUT", "10s", "time a client has to send a request's body once its headers are in; a slower one gets 408 (0: no limit)", durationInto(func(c *config) *time.Duration { return &c.BodyTimeout })},
		{"REQUEST_TIMEOUT", "30s", "longest time to answer a query, mutation or REST request (not a subscription): then GraphQL answers TIMEOUT and REST 503 (0: no limit)", durationInto(func(c *config) *time.Duration { return &c.RequestTimeout })},
		{"MAX_RESPONSE_BYTES", "16777216", "largest response (a GraphQL result, each subscription event, a GET /jobs listing): a larger one is stopped before it is built and answered RESPONSE_TOO_LARGE (REST: 400)", intInto(func(c *config) *int64 { return &c.MaxResponseBytes }, 1024)},
		{"WRITE_TIMEOUT", "10s", "deadline of each write of an HTTP response (each SSE event too); a client that stops reading for longer is dropped (0: no limit)", durationInto(func(c *config) *time.Duration { return &c.WriteTimeout })},
		{"MAX_INFLIGHT_RESPONSE_BYTES", "268435456", "bytes of all GraphQL responses built and not yet written: one that would go over it is answered SERVER_BUSY (HTTP 503)", intInto(func(c *config) *int64 { return &c.MaxInFlightResponses }, 1024)},
		{"HEAVY_COMPLEXITY", "1000", "complexity from which a query or mutation is heavy: at most HEAVY_QUERIES run at once, the others wait up to 5s, then get SERVER_BUSY (HTTP 503)", intInto(func(c *config) *int { return &c.HeavyComplexity }, 1)},
		{"HEAVY_QUERIES", "0", "heavy queries and mutations run at once (0: one per CPU core)", intInto(func(c *config) *int { return &c.HeavyQueries }, 0)},
		{"SUBSCRIBER_MAX_BACKLOG", "16384", "undelivered changes after which a lagging subscription ends with SLOW_SUBSCRIBER", intInto(func(c *config) *int { return &c.SubscriberMaxBacklog }, 1)},
		{"AUTH", "none", "who may call the API: none (anyone who reaches the port acts on every job), token (static tokens listed in API_TOKENS_FILE), jwt (JWTs from an identity provider: JWT_JWKS_URL or JWT_SECRET), or token,jwt (either)", func(c *config, v string) error {
			m, err := auth.ParseMode(v)
			c.Auth = m
			return err
		}},
		{"API_TOKENS_FILE", "", `JSON file of the static tokens' names, roles and SHA-256 hashes ({"tokens": [{"name": "ci", "role": "admin", "sha256": "…"}]}; "server token new" makes a token and its entry); holds no secret`, stringInto(func(c *config) *string { return &c.APITokensFile })},
		{"JWT_JWKS_URL", "", "URL of the identity provider's public keys (JWKS: RS256, ES256, EdDSA…); fetched at start, every 15 minutes and on an unknown kid (at most every 30 s)", stringInto(func(c *config) *string { return &c.JWTJWKSURL })},
		{"JWT_SECRET", "", "HS256 secret shared with the identity provider (at least 32 bytes), instead of JWT_JWKS_URL; never printed", stringInto(func(c *config) *string { return &c.JWTSecret })},
		{"JWT_ISSUER", "", "when set, a JWT's iss must equal it", stringInto(func(c *config) *string { return &c.JWTIssuer })},
		{"JWT_AUDIENCE", "", "when set, a JWT's aud must contain it", stringInto(func(c *config) *string { return &c.JWTAudience })},
		{"JWT_ROLE_CLAIM", auth.DefaultRoleClaim, "JWT claim holding the role (admin, viewer or user): a string, or an array naming one of them; dots reach nested claims (app_metadata.role)", stringInto(func(c *config) *string { return &c.JWTRoleClaim })},
		{"CORS_ALLOWED_ORIGINS", "", "web origins whose pages may call the API (comma-separated, like http://localhost:5173), * for any, or none; default: * with AUTH on, none with AUTH=none. Websocket handshakes from other origins get 403", func(c *config, v string) error {
			o, err := httpapi.ParseOrigins(v)
			c.CORSOrigins, c.CORSOriginsSet = o, v != ""
			return err
		}},
		{"ALLOWED_HOSTS", "", "with AUTH=none, Host names accepted besides IP addresses, localhost and this machine's name (comma-separated); others get 403, against DNS rebinding. * turns the check off (behind a proxy)", func(c *config, v string) error {
			_, err := httpapi.ParseHosts(v, "")
			c.AllowedHosts = v
			return err
		}},
		{"RATE_LIMIT", "0", "mutations per second each identity (each client address with AUTH=none) may sustain; a GraphQL mutation counts one per field, createJobs one per input. Over it: RATE_LIMITED (HTTP 429). 0: no limit", func(c *config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return fmt.Errorf("want a number of mutations per second, 0 or more, got %q", v)
			}
			c.RateLimit = f
			return nil
		}},
		{"METRICS", "on", "Prometheus metrics: on (GET /metrics, text or OpenMetrics) or off (nothing recorded)", func(c *config, v string) error {
			switch v {
			case "on":
				c.Metrics = true
			case "off":
				c.Metrics = false
			default:
				return fmt.Errorf("want on or off, got %q", v)
			}
			return nil
		}},
		{"METRICS_ADDR", "", "when set (e.g. :9090), serve /metrics only there, with /ready and /health, and not on PORT; keep it private", stringInto(func(c *config) *string { return &c.MetricsAddr })},
		{"METRICS_MAX_TYPES", "100", "distinct job types the metrics label; the others are counted as type=\"_other\"", intInto(func(c *config) *int { return &c.MetricsMaxTypes }, 1)},
		{"RATE_BURST", "0", "mutations an identity may make at once before RATE_LIMIT applies (0: RATE_LIMIT rounded up)", intInto(func(c *config) *int { return &c.RateBurst }, 0)},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "", "OpenTelemetry collector's base URL (OTLP over HTTP, e.g. http://collector:4318): setting it turns tracing on, spans go to its /v1/traces", stringInto(func(c *config) *string { return &c.Tracing.Endpoint })},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "full URL spans are sent to (e.g. http://collector:4318/v1/traces); wins over OTEL_EXPORTER_OTLP_ENDPOINT and turns tracing on too", stringInto(func(c *config) *string { return &c.Tracing.TracesEndpoint })},
		{"OTEL_TRACES_EXPORTER", "", "otlp (tracing on; to http://localhost:4318 without an endpoint) or none (off, whatever the endpoint); default: otlp when an endpoint is set, else none", stringInto(func(c *config) *string { return &c.Tracing.Exporter })},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "OTLP protocol of the exporter; only http/protobuf is supported", stringInto(func(c *config) *string { return &c.Tracing.Protocol })},
		{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "", "OTLP protocol of the trace exporter; wins over OTEL_EXPORTER_OTLP_PROTOCOL; only http/protobuf is supported", stringInto(func(c *config) *string { return &c.Tracing.TracesProtocol })},
		{"OTEL_SDK_DISABLED", "false", "true turns tracing off, whatever the other OTEL_* settings say", func(c *config, v string) error {
			switch strings.ToLower(v) {
			case "true":
				c.Tracing.Disabled = true
			case "false":
				c.Tracing.Disabled = false
			default:
				return fmt.Errorf("want true or false, got %q", v)
			}
			return nil
		}},
		{"OTEL_SERVICE_NAME", tracing.DefaultServiceName, "service.name of the spans", stringInto(func(c *config) *string { return &c.Tracing.ServiceName })},
		{"OTEL_TRACES_SAMPLER", "parentbased_always_on", "which traces are kept: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio (parentbased: follow the caller's traceparent decision)", stringInto(func(c *config) *string { return &c.Tracing.Sampler })},
		{"OTEL_TRACES_SAMPLER_ARG", "", "ratio of traces kept by the traceidratio samplers, 0 to 1 (default 1)", stringInto(func(c *config) *string { return &c.Tracing.SamplerArg })},
	}
}

// secretSetting reports whether env's value must never be shown: flag
// usage prints each flag's default, which is the environment's value.
func secretSetting(env string) bool { return env == "JWT_SECRET" }

func flagName(env string) string { return strings.ToLower(strings.ReplaceAll(env, "_", "-")) }

// parseConfig reads the environment, then the flags. -h prints every
// setting and returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(out)
	all := settings()
	values := make(map[string]*string, len(all))
	for _, s := range all {
		v := s.def
		if e := getenv(s.env); e != "" {
			v = e
		}
		if secretSetting(s.env) {
			v = "" // the environment's value is taken after parsing
		}
		values[s.env] = fs.String(flagName(s.env), v, fmt.Sprintf("%s (env %s, default %s)", s.help, s.env, s.def))
	}
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: server [flags]\n       server token new --name NAME --role ROLE\n\nEvery flag can also be set by the environment variable named after it.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var errs []error
	for _, s := range all {
		v := *values[s.env]
		if secretSetting(s.env) && v == "" {
			v = getenv(s.env)
		}
		if err := s.set(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s (-%s): %w", s.env, flagName(s.env), err))
		}
	}
	if len(errs) == 0 {
		errs = c.checkAuth()
	}
	if len(errs) == 0 {
		if err := c.Tracing.Check(); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

// checkAuth refuses access control settings that contradict AUTH. A
// setting that would silently do nothing is refused too: API_TOKENS_FILE
// set with AUTH left at none most likely means someone believes the
// server is protected.
func (c config) checkAuth() []error {
	var errs []error
	if c.Auth.Token && c.APITokensFile == "" {
		errs = append(errs, fmt.Errorf("AUTH=%s needs API_TOKENS_FILE (make a token and its entry with: server token new --name NAME --role ROLE)", c.Auth))
	}
	if !c.Auth.Token && c.APITokensFile != "" {
		errs = append(errs, fmt.Errorf("API_TOKENS_FILE is set, but AUTH=%s accepts no static token: set AUTH=token or AUTH=token,jwt", c.Auth))
	}
	if c.Auth.JWT {
		switch {
		case c.JWTJWKSURL == "" && c.JWTSecret == "":
			errs = append(errs, fmt.Errorf("AUTH=%s needs JWT_JWKS_URL (keys of an identity provider) or JWT_SECRET (HS256)", c.Auth))
		case c.JWTJWKSURL != "" && c.JWTSecret != "":
			errs = append(errs, errors.New("set JWT_JWKS_URL or JWT_SECRET, not both"))
		}
		return errs
	}
	for _, s := range []struct{ env, value, def string }{
		{"JWT_JWKS_URL", c.JWTJWKSURL, ""},
		{"JWT_SECRET", c.JWTSecret, ""},
		{"JWT_ISSUER", c.JWTIssuer, ""},
		{"JWT_AUDIENCE", c.JWTAudience, ""},
		{"JWT_ROLE_CLAIM", c.JWTRoleClaim, auth.DefaultRoleClaim},
	} {
		if s.value != s.def {
			errs = append(errs, fmt.Errorf("%s is set, but AUTH=%s accepts no JWT: set AUTH=jwt or AUTH=token,jwt", s.env, c.Auth))
		}
	}
	return errs
}

func stringInto(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		*field(c) = v
		return nil
	}
}

func intInto[T int | int64](field func(*config) *T, minimum T) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || int64(T(n)) != n {
			return fmt.Errorf("not an integer: %q", v)
		}
		if T(n) < minimum {
			return fmt.Errorf("must be at least %d, got %d", minimum, n)
		}
		*field(c) = T(n)
		return nil
	}
}

func durationInto(field func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		if v == "0" {
			*field(c) = 0
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("not a duration like 1s or 250ms: %q", v)
		}
		if d < 0 {
			return fmt.Errorf("must not be negative, got %s", v)
		}
		*field(c) = d
		return nil
	}
}

// logValue lists the configuration for the start-up log line.
func (c config) logAttrs() []any {
	return []any{
		"database", redactURL(c.DatabaseURL), "instance_id", c.InstanceID, "lease_duration", c.LeaseDuration, "poll_interval", c.PollInterval,
		"port", c.Port, "workers", c.Workers, "queue_capacity", c.QueueCapacity,
		"processing_time", c.ProcessingTime, "shutdown_timeout", c.ShutdownTimeout, "job_timeout", c.JobTimeout, "max_attempts", c.MaxAttempts, "error_history", c.ErrorHistory, "retry_backoff", c.RetryBackoff, "retry_backoff_max", c.RetryBackoffMax, "handlers_file", c.HandlersFile, "paused_types", c.PausedTypes, "periodic_file", c.PeriodicFile, "max_periodic_jobs", c.MaxPeriodic, "retention", c.Retention, "retention_sweep", c.RetentionSweep,
		"log_level", c.LogLevel.String(), "max_body_bytes", c.MaxBodyBytes,
		"max_payload_bytes", c.MaxPayloadBytes, "rest_list_max", c.RESTListMax,
		"max_subscriptions_per_conn", c.MaxSubscriptionsPerConn, "complexity_limit", c.ComplexityLimit,
		"max_query_tokens", c.MaxQueryTokens, "max_query_depth", c.MaxQueryDepth, "max_query_aliases", c.MaxQueryAliases,
		"max_query_directives", c.MaxQueryDirectives, "max_query_fragment_spreads", c.MaxQuerySpreads, "max_query_fields", c.MaxQueryFields,
		"max_jobs_per_request", c.MaxJobsPerRequest,
		"ws_read_limit", c.WSReadLimit, "ws_keepalive", c.WSKeepAlive, "ws_init_timeout", c.WSInitTimeout,
		"ws_write_timeout", c.WSWriteTimeout,
		"subscriber_buffer", c.SubscriberBuffer, "subscriber_max_backlog", c.SubscriberMaxBacklog, "debug_addr", c.DebugAddr,
		"max_connections", c.MaxConnections, "body_timeout", c.BodyTimeout, "request_timeout", c.RequestTimeout, "max_response_bytes", c.MaxResponseBytes, "heavy_complexity", c.HeavyComplexity, "write_timeout", c.WriteTimeout, "max_inflight_response_bytes", c.MaxInFlightResponses, "heavy_queries", c.HeavyQueries,
		"auth", c.Auth.String(), "api_tokens_file", c.APITokensFile, "jwt_jwks_url", c.JWTJWKSURL, "jwt_secret_set", c.JWTSecret != "",
		"jwt_issuer", c.JWTIssuer, "jwt_audience", c.JWTAudience, "jwt_role_claim", c.JWTRoleClaim,
		"cors_allowed_origins", c.origins().String(), "allowed_hosts", c.AllowedHosts, "rate_limit", c.RateLimit, "rate_burst", c.RateBurst,
		"metrics", c.Metrics, "metrics_addr", c.MetricsAddr, "metrics_max_types", c.MetricsMaxTypes,
		"tracing", c.Tracing.Enabled(), "otel_exporter_otlp_endpoint", redactURL(c.Tracing.Endpoint), "otel_exporter_otlp_traces_endpoint", redactURL(c.Tracing.TracesEndpoint), "otel_service_name", c.Tracing.ServiceName, "otel_traces_sampler", c.Tracing.Sampler,
	}
}

// graphQLLimits are the bounds of one GraphQL request.
func (c config) graphQLLimits() graph.Limits {
	return graph.Limits{
		Query: gqllimit.Limits{
			Tokens:          c.MaxQueryTokens,
			Depth:           c.MaxQueryDepth,
			Aliases:         c.MaxQueryAliases,
			Directives:      c.MaxQueryDirectives,
			FragmentSpreads: c.MaxQuerySpreads,
			Fields:          c.MaxQueryFields,
		},
		JobsPerRequest: c.MaxJobsPerRequest,
		PayloadBytes:   c.MaxPayloadBytes,
	}
}
