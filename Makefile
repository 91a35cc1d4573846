# openmmr: `make test` is what CI runs (.ci/run).
GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Fuzz budget per target as an execution count: a duration (-fuzztime 5s)
# trips a race in Go 1.26's fuzz coordinator that fails with "context deadline
# exceeded" and no crasher (golang/go#75804, fixed in Go 1.27).
FUZZTIME    ?= 20000x
BENCHTIME   ?= 1s

.PHONY: test lint bench bench-plot fuzz run abuse

## test: gofmt check, go vet, staticcheck, then every test with the race detector
test: lint
	$(GO) test -race -count=1 -timeout 10m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

## bench: the benchmarks (bench/README.md explains how to read them)
bench:
	$(GO) test ./bench -run '^$$' -bench . -benchtime $(BENCHTIME)
	$(GO) test ./web -run '^$$' -bench BenchmarkLookup -cpu 1 -benchtime $(BENCHTIME)

## bench-plot: BenchmarkFanout (mmr, floor, cfloor, naive) -> bench/fanout.{txt,png,svg}
bench-plot:
	$(GO) test ./bench -run '^$$' -bench 'BenchmarkFanout/^(mmr|floor|cfloor|naive)$$/' -benchtime $(BENCHTIME) | tee bench/fanout.txt
	$(GO) run ./cmd/benchplot -in bench/fanout.txt -out bench/fanout.png
	$(GO) run ./cmd/benchplot -in bench/fanout.txt -out bench/fanout.svg

## abuse: a short version of every hostile scenario of issue 14 (loopback only): legitimate traffic lost, refusals, descriptors and goroutines before/after
abuse:
	$(GO) run ./cmd/abuse

## fuzz: every fuzz target of every package, FUZZTIME executions each
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== fuzz $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -parallel 2; \
	  done; \
	done

## run: the router on its embedded defaults
run:
	$(GO) run ./cmd/mmr
