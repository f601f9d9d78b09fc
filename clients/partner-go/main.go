// A supplier's quoting bot in Go: it follows its organization's partner event feed, and answers
// every RFQ it is invited to with a quote on its standard terms. It uses the Go code generated
// from cofab's .proto contract as shipped (proto/buf.gen.yaml, module cofab.dev/api).
//
//	COFAB_TOKEN=cofab_... COFAB_SUPPLY_ADDRESS=127.0.0.1:50052 go run . -unit-price 12.40
//
// Prints one JSON line per quote it submitted on stdout. A gRPC error it cannot get past prints
// "CODE: message" on stderr and exits 1; a usage error exits 2; SIGINT or SIGTERM exits 0.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	eventsv1 "cofab.dev/api/gen/go/cofab/events/v1"
	procurementv1 "cofab.dev/api/gen/go/cofab/procurement/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The feed event that invites this supplier to quote (payload procurement.v1.RfqOpened).
const rfqOpened = "procurement.rfq.opened"

// terms is what the bot offers on every RFQ.
type terms struct {
	unitPrice  float64
	leadDays   int
	capacity   int64 // 0: the RFQ's whole quantity
	validFor   time.Duration
	notes      string
	maxQuotes  int // stop after this many quotes; 0: run until stopped
	cursorFile string
}

func main() {
	t, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	token := os.Getenv("COFAB_TOKEN")
	if token == "" {
		fmt.Fprintln(os.Stderr, "COFAB_TOKEN is not set: export the supplier's API token")
		os.Exit(2)
	}
	address := os.Getenv("COFAB_SUPPLY_ADDRESS")
	if address == "" {
		address = "127.0.0.1:50052"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, address, token, t, os.Stdout); err != nil {
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(os.Stderr, "%s: %s\n", strings.ToUpper(codeName(st.Code())), st.Message())
		} else {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}

func parseFlags(args []string) (terms, error) {
	fs := flag.NewFlagSet("supplier-bot", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	t := terms{}
	fs.Float64Var(&t.unitPrice, "unit-price", 10, "price of one unit, in the RFQ's currency")
	fs.IntVar(&t.leadDays, "lead-days", 14, "lead time in days")
	fs.Int64Var(&t.capacity, "capacity", 0, "units offered (0: the RFQ's quantity)")
	fs.DurationVar(&t.validFor, "valid-for", 30*24*time.Hour, "how long each offer holds")
	fs.StringVar(&t.notes, "notes", "quoted by the supplier bot", "notes on each quote")
	fs.IntVar(&t.maxQuotes, "max-quotes", 0, "stop after this many quotes (0: run until stopped)")
	fs.StringVar(&t.cursorFile, "cursor-file", "", "keeps the feed position across restarts")
	if err := fs.Parse(args); err != nil {
		return t, fmt.Errorf("usage: %v", err)
	}
	if t.unitPrice <= 0 || t.leadDays < 0 || t.capacity < 0 || t.validFor <= 0 {
		return t, errors.New("usage: -unit-price and -valid-for must be positive, -lead-days and -capacity not negative")
	}
	return t, nil
}

func dial(address string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if caFile := os.Getenv("COFAB_TLS_CA_FILE"); caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("COFAB_TLS_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("COFAB_TLS_CA_FILE holds no PEM certificate")
		}
		creds = credentials.NewClientTLSFromCert(pool, "")
	}
	return grpc.NewClient(address, grpc.WithTransportCredentials(creds))
}

// run follows the feed and quotes until ctx ends or maxQuotes quotes are in. An unavailable
// server is retried with backoff (the stream resumes after the last event handled).
func run(ctx context.Context, address, token string, t terms, out io.Writer) error {
	conn, err := dial(address)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	feed := eventsv1.NewEventFeedServiceClient(conn)
	procurement := procurementv1.NewProcurementServiceClient(conn)

	cursor := readCursor(t.cursorFile)
	quoted := 0
	failures := 0
	for {
		stream, err := feed.StreamEvents(ctx, &eventsv1.StreamEventsRequest{
			Cursor: cursor, TypePrefixes: []string{rfqOpened}, Follow: true,
		})
		if err == nil {
			for {
				var response *eventsv1.StreamEventsResponse
				response, err = stream.Recv()
				if err != nil {
					break
				}
				failures = 0
				done, qerr := handle(ctx, procurement, response.GetEvent(), t, out)
				if qerr != nil {
					return qerr
				}
				if done {
					quoted++
				}
				cursor = response.GetCursor()
				writeCursor(t.cursorFile, cursor)
				if t.maxQuotes > 0 && quoted >= t.maxQuotes {
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if status.Code(err) != codes.Unavailable || failures >= 5 {
			return err
		}
		failures++
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(1<<failures) * 250 * time.Millisecond):
		}
	}
}

// handle quotes on the RFQ of one rfq.opened event. It returns whether it quoted; an RFQ that is
// gone, closed or already quoted on is skipped (logged on stderr), other errors stop the bot.
func handle(ctx context.Context, client procurementv1.ProcurementServiceClient,
	event *eventsv1.EventEnvelope, t terms, out io.Writer) (bool, error) {
	var opened procurementv1.RfqOpened
	if err := event.GetData().UnmarshalTo(&opened); err != nil {
		fmt.Fprintf(os.Stderr, "skipped event %s: %v\n", event.GetId(), err)
		return false, nil
	}
	rfq := opened.GetRfq()
	capacity := t.capacity
	if capacity == 0 {
		capacity = rfq.GetQuantity()
	}
	quote, err := client.SubmitQuote(ctx, &procurementv1.SubmitQuoteRequest{
		Parent: rfq.GetName(),
		Quote: &procurementv1.Quote{
			UnitPrice:    t.unitPrice,
			LeadTimeDays: int32(t.leadDays),
			Capacity:     capacity,
			ValidUntil:   timestamppb.New(time.Now().Add(t.validFor)),
			Notes:        t.notes,
		},
		// The event id: a bot restarted before it saved its cursor submits nothing twice.
		RequestId: "supplier-bot-" + event.GetId(),
	})
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied:
		fmt.Fprintf(os.Stderr, "skipped %s: %s\n", rfq.GetName(), status.Convert(err).Message())
		return false, nil
	default:
		return false, err
	}
	line, err := protojson.Marshal(quote)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(out, "%s\n", line)
	return true, nil
}

func readCursor(path string) string {
	if path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func writeCursor(path, cursor string) {
	if path == "" {
		return
	}
	tmp := path + ".tmp"
	if os.WriteFile(tmp, []byte(cursor+"\n"), 0o600) == nil {
		_ = os.Rename(tmp, path)
	}
}

// codeName is the canonical upper-case name of a gRPC code, e.g. UNAUTHENTICATED.
func codeName(code codes.Code) string {
	name := code.String()
	var b strings.Builder
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}
