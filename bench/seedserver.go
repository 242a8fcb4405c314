package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bodystream/bodystream/internal/harness/readyfile"
)

// seedServer is the ext_proc server of the seed proof of concept, rebuilt for
// comparison: FULL_DUPLEX_STREAMED, it keeps the whole request body until Envoy says
// the body ended, then sends it back in 1 MiB chunks. It runs with grpc-go's default
// options, so its stream windows grow (BDP estimation) up to 16 MiB and Envoy pushes
// as fast as it reads. Everything the design of bodystream avoids, on purpose.
type seedServer struct {
	extprocv3.UnimplementedExternalProcessorServer
	chunkSize int
}

// seedChunkSize is the seed's reply chunk.
const seedChunkSize = 1 << 20

// runSeedServer is the hidden subcommand "seed-server": a separate process, so that
// the bench samples its memory like any other.
func runSeedServer(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench seed-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "gRPC listen `address`")
	readyFile := fs.String("ready-file", "", "once serving, write addr=ADDRESS to this `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("seed-server: %w", err)
	}
	g := grpc.NewServer() // the defaults, as the seed had them
	extprocv3.RegisterExternalProcessorServer(g, &seedServer{chunkSize: seedChunkSize})
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	if *readyFile != "" {
		if err := readyfile.Write(*readyFile, readyfile.Addrs{Addr: ln.Addr().String()}); err != nil {
			g.Stop()
			<-served
			return fmt.Errorf("seed-server: %w", err)
		}
	}
	select {
	case err := <-served:
		return fmt.Errorf("seed-server: %w", err)
	case <-ctx.Done():
		// Envoy is stopped first; whatever streams remain are cut.
		g.Stop()
		<-served
		return nil
	}
}

// Process answers the request headers at once, collects the request body, and sends
// it back in chunks when Envoy's last body message (or the trailers) arrives.
func (s *seedServer) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	var body []byte
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil
		}
		if err != nil {
			return err
		}
		switch r := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			err = stream.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
				RequestHeaders: &extprocv3.HeadersResponse{}}})
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			err = stream.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
				ResponseHeaders: &extprocv3.HeadersResponse{}}})
		case *extprocv3.ProcessingRequest_RequestBody:
			body = append(body, r.RequestBody.GetBody()...)
			if r.RequestBody.GetEndOfStream() {
				err = s.sendBody(stream, body, true)
				body = nil
			}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			if err = s.sendBody(stream, body, false); err == nil {
				err = stream.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
					RequestTrailers: &extprocv3.TrailersResponse{}}})
			}
			body = nil
		default:
			return status.Errorf(codes.Unimplemented, "seed-server: unexpected %T", r)
		}
		if err != nil {
			return err
		}
	}
}

// sendBody sends body in chunks of chunkSize, the last one with endOfStream.
func (s *seedServer) sendBody(stream extprocv3.ExternalProcessor_ProcessServer, body []byte, endOfStream bool) error {
	for {
		n := min(len(body), s.chunkSize)
		last := n == len(body)
		err := stream.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
			RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
					StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body[:n], EndOfStream: last && endOfStream},
				}},
			}},
		}})
		if err != nil || last {
			return err
		}
		body = body[n:]
	}
}
