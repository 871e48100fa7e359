# The two commands (README.md): `make run` and `make test`.
.PHONY: run test build lint

run:
	scripts/install-deps.sh run
	cargo build --release --bin homeward
	./target/release/homeward serve

test:
	scripts/test.sh

build:
	cargo build --workspace --all-targets

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
