# A container image of one oncelog broker, FROM scratch: it pulls nothing
# from a registry, so it builds on a machine with no registry access.
# Build the static binary first, then the image:
#
#   CGO_ENABLED=0 go build -trimpath -o oncelog ./cmd/oncelog
#   docker build -t oncelog .
#   docker run -p 9092:9092 -p 9644:9644 -v oncelog-data:/data oncelog
#
# Untested here: the project's machines have no container engine. The binary
# it packages is the one the test suite runs.
FROM scratch
COPY oncelog /oncelog
# The broker's data (segments, pebble stores). Mount a volume: a container's
# own layer is not where an acknowledged record should live.
VOLUME ["/data"]
USER 65532:65532
EXPOSE 9092 9644
# Listen on every interface inside the container; the published ports decide
# who can reach it. Anyone who can reach 9092 can produce, consume and delete
# topics unless authentication and ACLs are configured (docs/operations.md).
# Clients are told to reconnect to the advertised address: localhost:9092
# suits `docker run -p 9092:9092` on the same machine; set ONCELOG_ADVERTISE
# to the name clients use otherwise.
ENV ONCELOG_DATA_DIR=/data \
    ONCELOG_LISTEN=0.0.0.0:9092 \
    ONCELOG_ADVERTISE=localhost:9092 \
    ONCELOG_ADMIN_LISTEN=0.0.0.0:9644
ENTRYPOINT ["/oncelog"]
CMD ["serve"]
