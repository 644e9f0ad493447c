# packaging/: `make deb` builds mailplex-common, mailplex-director and mailplex-relay into
# $(O)/deb/ from a staged `make install` (Debian paths), without debhelper.
ifneq ($(filter deb,$(MAKECMDGOALS)),)
ifneq ($(SAN)$(FUZZ),00)
$(error make deb: packages are built without SAN=1 or FUZZ=1)
endif
endif
.PHONY: deb
deb: all
	@packaging/build-deb.sh "$(O)" "$(MAKE)"
