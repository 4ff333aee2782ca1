/*
 * The C ABI's error paths (run by tests/c_abi.rs under mpirun -np 1 in a local federation):
 * NULL handles and arguments, unknown names, type and shape mismatches, wrong region bounds,
 * bad codes, calls after finalize. Each must return its documented code with a message, and
 * nothing may crash. Prints "ERRORS ok checks=N" and exits 0 when every check holds.
 */
#include <juxmem.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks = 0, failures = 0;

/* Checks that `got` is `want` and that the thread's last message contains `needle`. */
static void expect(const char *what, juxmem_status got, juxmem_status want, const char *needle) {
  checks++;
  const char *msg = juxmem_last_error_message();
  if (got != want || (needle && !strstr(msg, needle))) {
    failures++;
    fprintf(stderr, "FAIL %s: got %u (%s), want %u; message: %s\n", what, got,
            juxmem_strerror(got), want, msg);
  }
}

int main(int argc, char **argv) {
  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);

  /* Before anything: NULL out-parameters and handles. */
  expect("init with NULL out", juxmem_init(MPI_COMM_WORLD, NULL), JUXMEM_E_NULL_PARAMETER, "out");
  expect("acquire NULL array", juxmem_array_acquire(NULL, 1.0), JUXMEM_E_NULL_PARAMETER, "array");
  expect("layout_ndims NULL", juxmem_layout_ndims(NULL, NULL), JUXMEM_E_NULL_PARAMETER, "layout");
  expect("finalize NULL", juxmem_finalize(NULL), JUXMEM_E_NULL_PARAMETER, "ctx");
  juxmem_array_close(NULL); /* accepted */
  juxmem_layout_free(NULL);
  juxmem_region_free(NULL);
  juxmem_names_free(NULL);
  juxmem_context_free(NULL);

  /* Codes have names; unknown ones too. */
  checks++;
  if (strncmp(juxmem_strerror(JUXMEM_E_NOT_FOUND), "JUXMEM_E_NOT_FOUND", 18) != 0 ||
      strncmp(juxmem_strerror(12345), "JUXMEM_E_UNKNOWN", 16) != 0) {
    failures++;
    fprintf(stderr, "FAIL strerror\n");
  }

  /* Bad layouts. */
  juxmem_layout *layout = NULL;
  uint64_t shape[2] = {10, 20}, grid[2] = {1, 1}, zero_grid[2] = {1, 0}, zero_blocks[2] = {0, 4};
  juxmem_dist kinds[2] = {JUXMEM_BLOCK, JUXMEM_CYCLIC};
  juxmem_dist bc[2] = {JUXMEM_BLOCK_CYCLIC, JUXMEM_BLOCK_CYCLIC};
  juxmem_dist bogus[2] = {JUXMEM_BLOCK, 99};
  expect("zero grid", juxmem_layout_new(2, shape, kinds, NULL, zero_grid, &layout),
         JUXMEM_E_BAD_GRID, "0 processes");
  expect("zero block", juxmem_layout_new(2, shape, bc, zero_blocks, grid, &layout),
         JUXMEM_E_ZERO_BLOCK, "block size");
  expect("block-cyclic without sizes", juxmem_layout_new(2, shape, bc, NULL, grid, &layout),
         JUXMEM_E_INVALID_ARGUMENT, "block_sizes");
  expect("unknown distribution", juxmem_layout_new(2, shape, bogus, NULL, grid, &layout),
         JUXMEM_E_INVALID_ARGUMENT, "99");
  checks++;
  if (layout != NULL) { /* out-parameters are written only on success */
    failures++;
    fprintf(stderr, "FAIL: a failed call wrote its out-parameter\n");
  }
  expect("good layout", juxmem_layout_new(2, shape, kinds, NULL, grid, &layout), JUXMEM_OK, NULL);

  juxmem_context *ctx = NULL;
  expect("init", juxmem_init(MPI_COMM_WORLD, &ctx), JUXMEM_OK, NULL);
  if (!ctx) {
    fprintf(stderr, "cannot continue without a context: %s\n", juxmem_last_error_message());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  /* Unknown names, bad names, unknown type codes. */
  juxmem_array *a = NULL;
  expect("open unknown", juxmem_array_open(ctx, "no/such/array", JUXMEM_TYPE_DOUBLE, layout, 0, &a),
         JUXMEM_E_NOT_FOUND, "no/such/array");
  expect("bad name", juxmem_array_create(ctx, "bad//name", JUXMEM_TYPE_DOUBLE, layout, NULL, &a),
         JUXMEM_E_INVALID_ARGUMENT, "bad//name");
  expect("unknown type", juxmem_array_create(ctx, "errors/x", 77, layout, NULL, &a),
         JUXMEM_E_INVALID_ARGUMENT, "77");
  expect("NULL name", juxmem_array_open(ctx, NULL, JUXMEM_TYPE_DOUBLE, layout, 0, &a),
         JUXMEM_E_NULL_PARAMETER, "name");

  /* A real array, then mismatches. */
  expect("create", juxmem_array_create(ctx, "errors/x", JUXMEM_TYPE_DOUBLE, layout, NULL, &a),
         JUXMEM_OK, NULL);
  juxmem_array *b = NULL;
  expect("type mismatch", juxmem_array_open(ctx, "errors/x", JUXMEM_TYPE_FLOAT, layout, 0, &b),
         JUXMEM_E_TYPE_MISMATCH, "f64");
  uint64_t other_shape[2] = {20, 10};
  juxmem_layout *other = NULL;
  expect("other layout", juxmem_layout_new(2, other_shape, kinds, NULL, grid, &other), JUXMEM_OK,
         NULL);
  expect("shape mismatch", juxmem_array_open(ctx, "errors/x", JUXMEM_TYPE_DOUBLE, other, 0, &b),
         JUXMEM_E_SHAPE_MISMATCH, "shape");
  expect("duplicate name", juxmem_array_create(ctx, "errors/x", JUXMEM_TYPE_DOUBLE, layout, NULL, &b),
         JUXMEM_E_ALREADY_EXISTS, "errors/x");

  /* Access without acquire, then wrong region bounds. */
  double buf[400];
  void *data;
  uint64_t local_shape[2];
  uint64_t lo[2] = {0, 0}, hi[2] = {1, 1}, beyond[2] = {10, 0}, inverted_lo[2] = {3, 3};
  expect("get without acquire", juxmem_array_get(a, lo, hi, buf, NULL), JUXMEM_E_NOT_ACQUIRED, NULL);
  expect("write without acquire", juxmem_array_local_write(a, &data, local_shape, NULL),
         JUXMEM_E_NOT_ACQUIRED, "acquire");
  expect("release without acquire", juxmem_array_release(a, NULL), JUXMEM_E_NOT_ACQUIRED, NULL);
  /* Non-blocking requests: refused at the call (the request stays NULL); NULL ones. */
  juxmem_request *req = (juxmem_request *)&checks; /* overwritten with NULL on refusal */
  expect("get_nb without acquire", juxmem_array_get_nb(a, lo, hi, buf, NULL, &req),
         JUXMEM_E_NOT_ACQUIRED, "acquire");
  checks++;
  if (req != NULL) {
    failures++;
    fprintf(stderr, "FAIL: a refused get_nb left a request\n");
  }
  expect("get_nb NULL request", juxmem_array_get_nb(a, lo, hi, buf, NULL, NULL),
         JUXMEM_E_NULL_PARAMETER, "request");
  req = (juxmem_request *)&checks;
  expect("put_nb without acquire", juxmem_array_put_nb(a, lo, hi, buf, NULL, &req),
         JUXMEM_E_NOT_ACQUIRED, "acquire");
  checks++;
  if (req != NULL) {
    failures++;
    fprintf(stderr, "FAIL: a refused put_nb left a request\n");
  }
  int done = 0;
  expect("wait on a NULL request", juxmem_wait(&req, 1.0), JUXMEM_OK, NULL);
  expect("test on a NULL request", juxmem_test(&req, &done), JUXMEM_OK, NULL);
  expect("test with NULL done", juxmem_test(&req, NULL), JUXMEM_E_NULL_PARAMETER, "done");
  expect("wait NULL", juxmem_wait(NULL, 1.0), JUXMEM_E_NULL_PARAMETER, "request");
  expect("acquire", juxmem_array_acquire(a, 5.0), JUXMEM_OK, NULL);
  req = (juxmem_request *)&checks;
  expect("put_nb beyond the array", juxmem_array_put_nb(a, lo, beyond, buf, NULL, &req),
         JUXMEM_E_OUT_OF_BOUNDS, "region");
  checks++;
  if (req != NULL) {
    failures++;
    fprintf(stderr, "FAIL: a refused put_nb left a request\n");
  }
  expect("region beyond the array", juxmem_array_put(a, lo, beyond, buf, NULL),
         JUXMEM_E_OUT_OF_BOUNDS, "region");
  expect("inverted region", juxmem_array_get(a, inverted_lo, hi, buf, NULL), JUXMEM_E_OUT_OF_BOUNDS,
         "inclusive");
  uint64_t small_ld[1] = {1};
  expect("leading dimension too small", juxmem_array_get(a, lo, hi, buf, small_ld),
         JUXMEM_E_INVALID_ARGUMENT, "leading dimension");
  expect("acquire twice", juxmem_array_acquire(a, 1.0), JUXMEM_E_NOT_ACQUIRED, "still acquired");
  expect("bad version mode", juxmem_array_acquire_read(a, 9, 0, 1.0, NULL), JUXMEM_E_INVALID_ARGUMENT,
         "version mode");
  expect("local write", juxmem_array_local_write(a, &data, local_shape, NULL), JUXMEM_OK, NULL);
  for (int i = 0; i < 200; i++) ((double *)data)[i] = (double)i; /* one rank: local = global */
  /* A 2x3 region into a buffer with leading dimension 5 (GA style), then back out. */
  double wide[10];
  uint64_t rlo[2] = {1, 2}, rhi[2] = {2, 4}, ld5[1] = {5};
  for (int i = 0; i < 10; i++) wide[i] = -1.0;
  expect("get with ld", juxmem_array_get(a, rlo, rhi, wide, ld5), JUXMEM_OK, NULL);
  checks++;
  for (int r = 0; r < 2; r++)
    for (int c = 0; c < 5; c++) {
      double want = c < 3 ? (double)((1 + r) * 20 + 2 + c) : -1.0;
      if (wide[r * 5 + c] != want) {
        failures++;
        fprintf(stderr, "FAIL get with ld: [%d][%d] = %g, want %g\n", r, c, wide[r * 5 + c], want);
        r = 2;
        break;
      }
    }
  for (int i = 0; i < 10; i++) wide[i] = 1000.0 + i;
  expect("put with ld", juxmem_array_put(a, rlo, rhi, wide, ld5), JUXMEM_OK, NULL);
  checks++;
  if (((double *)data)[1 * 20 + 2] != 1000.0 || ((double *)data)[2 * 20 + 4] != 1007.0) {
    failures++;
    fprintf(stderr, "FAIL put with ld\n");
  }
  ((double *)data)[0] = 42.0;
  uint64_t version = 0;
  expect("release", juxmem_array_release(a, &version), JUXMEM_OK, NULL);
  checks++;
  if (version != 1) {
    failures++;
    fprintf(stderr, "FAIL: release gave version %llu\n", (unsigned long long)version);
  }
  expect("version wait times out", juxmem_array_acquire_read(a, JUXMEM_EXACTLY, 7, 0.3, NULL),
         JUXMEM_E_TIMEOUT, "errors/x");
  expect("read", juxmem_array_acquire_read(a, JUXMEM_AT_LEAST, 1, 5.0, &version), JUXMEM_OK, NULL);
  expect("get", juxmem_array_get(a, lo, hi, buf, NULL), JUXMEM_OK, NULL);
  checks++;
  if (buf[0] != 42.0) {
    failures++;
    fprintf(stderr, "FAIL: read back %g\n", buf[0]);
  }
  expect("release read", juxmem_array_release_read(a), JUXMEM_OK, NULL);
  /* A relaxed read: no acquire needed, the latest committed version, read whole. */
  uint64_t relaxed_version = 0;
  buf[0] = 0.0;
  expect("relaxed read", juxmem_array_get_relaxed(a, lo, hi, buf, NULL, 0.0, &relaxed_version),
         JUXMEM_OK, NULL);
  checks++;
  if (relaxed_version != 1 || buf[0] != 42.0) {
    failures++;
    fprintf(stderr, "FAIL: relaxed read gave version %llu, value %g\n",
            (unsigned long long)relaxed_version, buf[0]);
  }
  expect("relaxed read, negative staleness",
         juxmem_array_get_relaxed(a, lo, hi, buf, NULL, -1.0, NULL), JUXMEM_E_INVALID_ARGUMENT,
         "max_staleness_seconds");
  expect("relaxed read, NULL array", juxmem_array_get_relaxed(NULL, lo, hi, buf, NULL, 0.0, NULL),
         JUXMEM_E_NULL_PARAMETER, "array");
  /* Checkpoint the version read, restore it under another name, read it back. */
  char dir[512];
  const char *fed_dir = getenv("JUXMEM_FEDERATION_DIR");
  snprintf(dir, sizeof dir, "%s/errors-checkpoint", fed_dir ? fed_dir : "/tmp");
  expect("checkpoint without read", juxmem_array_checkpoint(a, dir, NULL), JUXMEM_E_NOT_ACQUIRED,
         "acquire_read");
  expect("read to checkpoint", juxmem_array_acquire_read(a, JUXMEM_LATEST, 0, 5.0, NULL), JUXMEM_OK,
         NULL);
  uint64_t checkpointed = 0;
  expect("checkpoint", juxmem_array_checkpoint(a, dir, &checkpointed), JUXMEM_OK, NULL);
  expect("release checkpointed read", juxmem_array_release_read(a), JUXMEM_OK, NULL);
  juxmem_array *restored = NULL;
  expect("restore", juxmem_restore(ctx, dir, "restored/errors", JUXMEM_TYPE_DOUBLE, layout, NULL,
                                   &restored),
         JUXMEM_OK, NULL);
  buf[0] = 0.0;
  expect("read restored", juxmem_array_acquire_read(restored, JUXMEM_EXACTLY, 1, 5.0, NULL),
         JUXMEM_OK, NULL);
  expect("get restored", juxmem_array_get(restored, lo, hi, buf, NULL), JUXMEM_OK, NULL);
  checks++;
  if (checkpointed != 1 || buf[0] != 42.0) {
    failures++;
    fprintf(stderr, "FAIL: checkpointed version %llu, restored value %g\n",
            (unsigned long long)checkpointed, buf[0]);
  }
  expect("release restored read", juxmem_array_release_read(restored), JUXMEM_OK, NULL);
  juxmem_array_close(restored);
  juxmem_array *none = NULL;
  expect("restore as another type",
         juxmem_restore(ctx, dir, "restored/r2", JUXMEM_TYPE_FLOAT, layout, NULL, &none),
         JUXMEM_E_TYPE_MISMATCH, "f64");
  expect("restore from nowhere",
         juxmem_restore(ctx, "/nonexistent/checkpoint", "restored/r3", JUXMEM_TYPE_DOUBLE, layout,
                        NULL, &none),
         JUXMEM_E_NOT_FOUND, "manifest");
  expect("restore NULL dir", juxmem_restore(ctx, NULL, "restored/r4", JUXMEM_TYPE_DOUBLE, layout,
                                            NULL, &none),
         JUXMEM_E_NULL_PARAMETER, "dir");
  /* Attributes under a write acquire, then found by search. */
  expect("attribute without acquire", juxmem_array_set_attribute(a, "units", "K"),
         JUXMEM_E_NOT_ACQUIRED, "acquire");
  expect("acquire for attributes", juxmem_array_acquire(a, 5.0), JUXMEM_OK, NULL);
  expect("bad attribute key", juxmem_array_set_attribute(a, "un its", "K"),
         JUXMEM_E_INVALID_ARGUMENT, "attribute key");
  expect("attribute", juxmem_array_set_attribute(a, "units", "K"), JUXMEM_OK, NULL);
  expect("release after attributes", juxmem_array_release(a, NULL), JUXMEM_OK, NULL);
  const char *keys[1] = {"units"}, *values[1] = {"K"}, *pascal[1] = {"Pa"};
  juxmem_names *found = NULL;
  expect("search", juxmem_search(ctx, NULL, JUXMEM_TYPE_DOUBLE, 0, NULL, 1, keys, values, &found),
         JUXMEM_OK, NULL);
  size_t nfound = 0;
  const char *first = NULL;
  expect("search count", juxmem_names_count(found, &nfound), JUXMEM_OK, NULL);
  checks++;
  if (nfound != 1 || juxmem_names_get(found, 0, &first) != JUXMEM_OK || strcmp(first, "errors/x")) {
    failures++;
    fprintf(stderr, "FAIL: search found %zu names\n", nfound);
  }
  juxmem_names_free(found);
  expect("search, no match", juxmem_search(ctx, "*", 0, 0, NULL, 1, keys, pascal, &found), JUXMEM_OK,
         NULL);
  expect("search count, no match", juxmem_names_count(found, &nfound), JUXMEM_OK, NULL);
  checks++;
  if (nfound != 0) {
    failures++;
    fprintf(stderr, "FAIL: search for units=Pa found %zu names\n", nfound);
  }
  juxmem_names_free(found);
  expect("search, NULL keys", juxmem_search(ctx, NULL, 0, 0, NULL, 1, NULL, values, &found),
         JUXMEM_E_NULL_PARAMETER, "keys");
  juxmem_names *names = NULL;
  expect("list", juxmem_list(ctx, "errors/", &names), JUXMEM_OK, NULL);
  const char *name = NULL;
  expect("list entry", juxmem_names_get(names, 0, &name), JUXMEM_OK, NULL);
  expect("list beyond", juxmem_names_get(names, 1, &name), JUXMEM_E_OUT_OF_BOUNDS, "name 1");
  juxmem_names_free(names);

  /* After finalize: the context and its arrays refuse politely. */
  expect("finalize", juxmem_finalize(ctx), JUXMEM_OK, NULL);
  expect("finalize twice", juxmem_finalize(ctx), JUXMEM_E_FINALIZED, "juxmem_finalize");
  expect("acquire after finalize", juxmem_array_acquire(a, 1.0), JUXMEM_E_FINALIZED, "finalize");
  expect("open after finalize", juxmem_array_open(ctx, "errors/x", JUXMEM_TYPE_DOUBLE, layout, 0, &b),
         JUXMEM_E_FINALIZED, "finalize");
  expect("list after finalize", juxmem_list(ctx, "*", &names), JUXMEM_E_FINALIZED, NULL);
  juxmem_array_close(a);
  juxmem_context_free(ctx);
  juxmem_layout_free(layout);
  juxmem_layout_free(other);

  printf("ERRORS %s checks=%d failures=%d\n", failures ? "FAILED" : "ok", checks, failures);
  MPI_Finalize();
  return failures ? 1 : 0;
}
