# packaging/: `make deb` builds mailplex-common, mailplex-director and mailplex-relay into
# $(O)/deb/ from a staged `make install` (Debian paths), without debhelper.
.PHONY: deb
deb: all
	@packaging/build-deb.sh "$(O)" "$(MAKE)"
