! juxmem for Fortran: `use juxmem` (ISO_C_BINDING over the C ABI in juxmem.h).
!
! Conventions, as Global Arrays' Fortran API:
! - indices are 1-based and arrays column-major: a Fortran array T(nx, ny) is the C/Rust array
!   of shape [ny, nx]; every shape, grid, distribution list and index is given in Fortran order
!   and reversed here;
! - regions are [lo, hi] with hi inclusive;
! - every procedure ends with an INTEGER ierr: JUXMEM_OK (0) or a JUXMEM_E_* code;
!   juxmem_error_message() gives the details of the last failure.
! - juxmem_init takes an MPI communicator handle (e.g. MPI_COMM_WORLD); MPI must be
!   initialised with at least MPI_THREAD_FUNNELED; call juxmem_finalize before MPI_Finalize.
!
! The constants below must equal those of include/juxmem.h (tests/c_abi.rs checks that).
module juxmem
  use, intrinsic :: iso_c_binding
  implicit none
  private

  type, public :: juxmem_context
    type(c_ptr) :: ptr = c_null_ptr
  end type
  type, public :: juxmem_layout
    type(c_ptr) :: ptr = c_null_ptr
  end type
  type, public :: juxmem_array
    type(c_ptr) :: ptr = c_null_ptr
    integer :: ndims = 0
  end type

  ! Status codes.
  integer, parameter, public :: JUXMEM_OK = 0
  integer, parameter, public :: JUXMEM_E_INVALID_ARGUMENT = 100
  integer, parameter, public :: JUXMEM_E_SHAPE_MISMATCH = 101
  integer, parameter, public :: JUXMEM_E_TYPE_MISMATCH = 102
  integer, parameter, public :: JUXMEM_E_BUFFER_SIZE = 103
  integer, parameter, public :: JUXMEM_E_OUT_OF_BOUNDS = 104
  integer, parameter, public :: JUXMEM_E_BAD_GRID = 200
  integer, parameter, public :: JUXMEM_E_ZERO_BLOCK = 201
  integer, parameter, public :: JUXMEM_E_OVERFLOW = 202
  integer, parameter, public :: JUXMEM_E_DIMENSION_MISMATCH = 203
  integer, parameter, public :: JUXMEM_E_MPI = 300
  integer, parameter, public :: JUXMEM_E_TIMEOUT = 301
  integer, parameter, public :: JUXMEM_E_NETWORK = 302
  integer, parameter, public :: JUXMEM_E_PROTOCOL = 303
  integer, parameter, public :: JUXMEM_E_REFUSED = 304
  integer, parameter, public :: JUXMEM_E_NOT_FOUND = 400
  integer, parameter, public :: JUXMEM_E_ALREADY_EXISTS = 401
  integer, parameter, public :: JUXMEM_E_VERSION_GONE = 402
  integer, parameter, public :: JUXMEM_E_CAPACITY = 403
  integer, parameter, public :: JUXMEM_E_LOST = 404
  integer, parameter, public :: JUXMEM_E_STALE = 405
  integer, parameter, public :: JUXMEM_E_NOT_ACQUIRED = 406
  integer, parameter, public :: JUXMEM_E_FENCED = 407
  integer, parameter, public :: JUXMEM_E_BUSY = 408
  integer, parameter, public :: JUXMEM_E_PRODUCER_GONE = 409
  integer, parameter, public :: JUXMEM_E_NOT_LEADER = 410
  integer, parameter, public :: JUXMEM_E_NULL_PARAMETER = 500
  integer, parameter, public :: JUXMEM_E_PANIC = 501
  integer, parameter, public :: JUXMEM_E_FINALIZED = 502
  ! Element types.
  integer, parameter, public :: JUXMEM_TYPE_INT8 = 1
  integer, parameter, public :: JUXMEM_TYPE_UINT8 = 2
  integer, parameter, public :: JUXMEM_TYPE_INT16 = 3
  integer, parameter, public :: JUXMEM_TYPE_UINT16 = 4
  integer, parameter, public :: JUXMEM_TYPE_INT32 = 5
  integer, parameter, public :: JUXMEM_TYPE_UINT32 = 6
  integer, parameter, public :: JUXMEM_TYPE_INT64 = 7
  integer, parameter, public :: JUXMEM_TYPE_UINT64 = 8
  integer, parameter, public :: JUXMEM_TYPE_FLOAT = 9
  integer, parameter, public :: JUXMEM_TYPE_DOUBLE = 10
  ! Distributions.
  integer, parameter, public :: JUXMEM_BLOCK = 1
  integer, parameter, public :: JUXMEM_CYCLIC = 2
  integer, parameter, public :: JUXMEM_BLOCK_CYCLIC = 3
  ! Version modes.
  integer, parameter, public :: JUXMEM_LATEST = 0
  integer, parameter, public :: JUXMEM_AT_LEAST = 1
  integer, parameter, public :: JUXMEM_EXACTLY = 2
  ! Policies when the retained versions are at the bound.
  integer, parameter, public :: JUXMEM_FULL_BLOCK = 0
  integer, parameter, public :: JUXMEM_FULL_DROP_OLDEST = 1

  public :: juxmem_init, juxmem_finalize, juxmem_error_message
  public :: juxmem_layout_new, juxmem_layout_free
  public :: juxmem_array_create, juxmem_array_open, juxmem_array_close, juxmem_array_destroy
  public :: juxmem_array_acquire, juxmem_array_release, juxmem_array_acquire_overwrite
  public :: juxmem_array_acquire_read, juxmem_array_release_read
  public :: juxmem_array_local_read, juxmem_array_local_write
  public :: juxmem_array_get, juxmem_array_put, juxmem_array_get_relaxed
  public :: juxmem_array_checkpoint, juxmem_restore
  public :: juxmem_array_set_attribute, juxmem_search
  public :: juxmem_namespace_create, juxmem_namespace_destroy
  public :: juxmem_namespace_checkpoint, juxmem_namespace_restore
  public :: juxmem_array_get_nb, juxmem_array_put_nb, juxmem_wait, juxmem_test
  public :: juxmem_array_acquire_read_nb

  !> A non-blocking get or put in flight (juxmem_array_get_nb, juxmem_array_put_nb): complete
  !> it with juxmem_wait or juxmem_test. Its buffer belongs to the transfer until then: declare
  !> it ASYNCHRONOUS (as for MPI's non-blocking calls) and do not touch it meanwhile.
  type, public :: juxmem_request
    type(c_ptr) :: ptr = c_null_ptr
  end type

  !> Longest array name (bytes), the length of the names juxmem_search returns.
  integer, parameter, public :: JUXMEM_MAX_NAME = 255

  ! The C options struct (see juxmem_array_options in juxmem.h).
  type, bind(C) :: c_options
    integer(c_int32_t) :: clusters, providers_per_cluster, max_versions, on_full, homes_on_daemons
    integer(c_int32_t) :: readers
    type(c_ptr) :: replicate_to
  end type

  interface juxmem_array_local_read
    module procedure local_read_r8_1d, local_read_r8_2d
  end interface
  interface juxmem_array_local_write
    module procedure local_write_r8_1d, local_write_r8_2d
  end interface
  interface juxmem_array_get
    module procedure get_r8_1d, get_r8_2d
  end interface
  interface juxmem_array_put
    module procedure put_r8_1d, put_r8_2d
  end interface
  ! A relaxed read: no acquire, lock or pin; a committed version that was the latest at most
  ! max_staleness seconds ago (0: the latest now), returned in version.
  interface juxmem_array_get_relaxed
    module procedure get_relaxed_r8_1d, get_relaxed_r8_2d
  end interface
  ! Non-blocking get and put (as NGA_NbGet / NGA_NbPut): they start the transfer and return.
  interface juxmem_array_get_nb
    module procedure get_nb_r8_1d, get_nb_r8_2d
  end interface
  interface juxmem_array_put_nb
    module procedure put_nb_r8_1d, put_nb_r8_2d
  end interface

  interface
    integer(c_int32_t) function c_init_f(comm, out) bind(C, name="juxmem_init_f")
      import :: c_int, c_int32_t, c_ptr
      integer(c_int), value :: comm
      type(c_ptr) :: out
    end function
    integer(c_int32_t) function c_finalize(ctx) bind(C, name="juxmem_finalize")
      import :: c_int32_t, c_ptr
      type(c_ptr), value :: ctx
    end function
    subroutine c_context_free(ctx) bind(C, name="juxmem_context_free")
      import :: c_ptr
      type(c_ptr), value :: ctx
    end subroutine
    type(c_ptr) function c_last_error_message() bind(C, name="juxmem_last_error_message")
      import :: c_ptr
    end function
    integer(c_int32_t) function c_layout_new(ndims, shape, kinds, blocks, grid, out) &
        bind(C, name="juxmem_layout_new")
      import :: c_int32_t, c_int64_t, c_ptr
      integer(c_int32_t), value :: ndims
      integer(c_int64_t), intent(in) :: shape(*), blocks(*), grid(*)
      integer(c_int32_t), intent(in) :: kinds(*)
      type(c_ptr) :: out
    end function
    subroutine c_layout_free(layout) bind(C, name="juxmem_layout_free")
      import :: c_ptr
      type(c_ptr), value :: layout
    end subroutine
    integer(c_int32_t) function c_options_default(opts) bind(C, name="juxmem_array_options_default")
      import :: c_int32_t, c_options
      type(c_options) :: opts
    end function
    integer(c_int32_t) function c_array_create(ctx, name, elem, layout, opts, out) &
        bind(C, name="juxmem_array_create")
      import :: c_int32_t, c_ptr, c_char, c_options
      type(c_ptr), value :: ctx, layout
      character(kind=c_char), intent(in) :: name(*)
      integer(c_int32_t), value :: elem
      type(c_options), intent(in) :: opts
      type(c_ptr) :: out
    end function
    integer(c_int32_t) function c_array_open(ctx, name, elem, layout, timeout, out) &
        bind(C, name="juxmem_array_open")
      import :: c_int32_t, c_ptr, c_char, c_double
      type(c_ptr), value :: ctx, layout
      character(kind=c_char), intent(in) :: name(*)
      integer(c_int32_t), value :: elem
      real(c_double), value :: timeout
      type(c_ptr) :: out
    end function
    subroutine c_array_close(array) bind(C, name="juxmem_array_close")
      import :: c_ptr
      type(c_ptr), value :: array
    end subroutine
    integer(c_int32_t) function c_array_destroy(array) bind(C, name="juxmem_array_destroy")
      import :: c_int32_t, c_ptr
      type(c_ptr), value :: array
    end function
    integer(c_int32_t) function c_array_acquire(array, timeout) bind(C, name="juxmem_array_acquire")
      import :: c_int32_t, c_ptr, c_double
      type(c_ptr), value :: array
      real(c_double), value :: timeout
    end function
    integer(c_int32_t) function c_array_acquire_overwrite(array, timeout) &
        bind(C, name="juxmem_array_acquire_overwrite")
      import :: c_int32_t, c_ptr, c_double
      type(c_ptr), value :: array
      real(c_double), value :: timeout
    end function
    integer(c_int32_t) function c_array_release(array, version) bind(C, name="juxmem_array_release")
      import :: c_int32_t, c_ptr, c_int64_t
      type(c_ptr), value :: array
      integer(c_int64_t) :: version
    end function
    integer(c_int32_t) function c_array_acquire_read(array, mode, version, timeout, version_out) &
        bind(C, name="juxmem_array_acquire_read")
      import :: c_int32_t, c_ptr, c_int64_t, c_double
      type(c_ptr), value :: array
      integer(c_int32_t), value :: mode
      integer(c_int64_t), value :: version
      real(c_double), value :: timeout
      integer(c_int64_t) :: version_out
    end function
    integer(c_int32_t) function c_array_release_read(array) bind(C, name="juxmem_array_release_read")
      import :: c_int32_t, c_ptr
      type(c_ptr), value :: array
    end function
    integer(c_int32_t) function c_array_local(array, data, local_shape, first) &
        bind(C, name="juxmem_array_local_write")
      import :: c_int32_t, c_ptr, c_int64_t
      type(c_ptr), value :: array
      type(c_ptr) :: data
      integer(c_int64_t) :: local_shape(*), first(*)
    end function
    integer(c_int32_t) function c_array_local_ro(array, data, local_shape, first) &
        bind(C, name="juxmem_array_local_read")
      import :: c_int32_t, c_ptr, c_int64_t
      type(c_ptr), value :: array
      type(c_ptr) :: data
      integer(c_int64_t) :: local_shape(*), first(*)
    end function
    integer(c_int32_t) function c_array_get(array, lo, hi, buf, ld) bind(C, name="juxmem_array_get")
      import :: c_int32_t, c_ptr, c_int64_t
      type(c_ptr), value :: array, buf
      integer(c_int64_t), intent(in) :: lo(*), hi(*), ld(*)
    end function
    integer(c_int32_t) function c_array_get_relaxed(array, lo, hi, buf, ld, staleness, version) &
        bind(C, name="juxmem_array_get_relaxed")
      import :: c_int32_t, c_ptr, c_int64_t, c_double
      type(c_ptr), value :: array, buf
      integer(c_int64_t), intent(in) :: lo(*), hi(*), ld(*)
      real(c_double), value :: staleness
      integer(c_int64_t), intent(out) :: version
    end function
    integer(c_int32_t) function c_array_checkpoint(array, dir, version) &
        bind(C, name="juxmem_array_checkpoint")
      import :: c_int32_t, c_ptr, c_int64_t, c_char
      type(c_ptr), value :: array
      character(kind=c_char), intent(in) :: dir(*)
      integer(c_int64_t), intent(out) :: version
    end function
    integer(c_int32_t) function c_namespace_create(ctx, name) &
        bind(C, name="juxmem_namespace_create")
      import :: c_int32_t, c_ptr, c_char
      type(c_ptr), value :: ctx
      character(kind=c_char), intent(in) :: name(*)
    end function
    integer(c_int32_t) function c_namespace_destroy(ctx, name, confirm) &
        bind(C, name="juxmem_namespace_destroy")
      import :: c_int32_t, c_ptr, c_char, c_int
      type(c_ptr), value :: ctx
      character(kind=c_char), intent(in) :: name(*)
      integer(c_int), value :: confirm
    end function
    integer(c_int32_t) function c_namespace_checkpoint(ctx, name, dir) &
        bind(C, name="juxmem_namespace_checkpoint")
      import :: c_int32_t, c_ptr, c_char
      type(c_ptr), value :: ctx
      character(kind=c_char), intent(in) :: name(*), dir(*)
    end function
    integer(c_int32_t) function c_namespace_restore(ctx, dir, name, out) &
        bind(C, name="juxmem_namespace_restore")
      import :: c_int32_t, c_ptr, c_char
      type(c_ptr), value :: ctx, out
      character(kind=c_char), intent(in) :: dir(*), name(*)
    end function
    integer(c_int32_t) function c_restore(ctx, dir, name, elem_type, layout, opts, out) &
        bind(C, name="juxmem_restore")
      import :: c_int32_t, c_ptr, c_char
      type(c_ptr), value :: ctx, layout, opts
      character(kind=c_char), intent(in) :: dir(*), name(*)
      integer(c_int32_t), value :: elem_type
      type(c_ptr) :: out
    end function
    integer(c_int32_t) function c_array_put(array, lo, hi, buf, ld) bind(C, name="juxmem_array_put")
      import :: c_int32_t, c_ptr, c_int64_t
      type(c_ptr), value :: array, buf
      integer(c_int64_t), intent(in) :: lo(*), hi(*), ld(*)
    end function
    integer(c_int32_t) function c_array_get_nb(array, lo, hi, buf, ld, request) &
        bind(C, name="juxmem_array_get_nb")
      import :: c_int32_t, c_ptr, c_int64_t
      type(c_ptr), value :: array, buf
      integer(c_int64_t), intent(in) :: lo(*), hi(*), ld(*)
      type(c_ptr) :: request
    end function
    integer(c_int32_t) function c_array_put_nb(array, lo, hi, buf, ld, request) &
        bind(C, name="juxmem_array_put_nb")
      import :: c_int32_t, c_ptr, c_int64_t
      type(c_ptr), value :: array, buf
      integer(c_int64_t), intent(in) :: lo(*), hi(*), ld(*)
      type(c_ptr) :: request
    end function
    integer(c_int32_t) function c_array_acquire_read_nb(array, mode, version, timeout, request) &
        bind(C, name="juxmem_array_acquire_read_nb")
      import :: c_int32_t, c_ptr, c_int64_t, c_double
      type(c_ptr), value :: array
      integer(c_int32_t), value :: mode
      integer(c_int64_t), value :: version
      real(c_double), value :: timeout
      type(c_ptr) :: request
    end function
    integer(c_int32_t) function c_wait(request, timeout) bind(C, name="juxmem_wait")
      import :: c_int32_t, c_ptr, c_double
      type(c_ptr) :: request
      real(c_double), value :: timeout
    end function
    integer(c_int32_t) function c_test(request, done) bind(C, name="juxmem_test")
      import :: c_int32_t, c_ptr
      type(c_ptr) :: request
      integer(c_int32_t) :: done
    end function
    integer(c_int32_t) function c_array_set_attribute(array, key, value) &
        bind(C, name="juxmem_array_set_attribute")
      import :: c_int32_t, c_ptr, c_char
      type(c_ptr), value :: array
      character(kind=c_char), intent(in) :: key(*), value(*)
    end function
    integer(c_int32_t) function c_search(ctx, pattern, elem_type, ndims, shape, nattrs, keys, &
        values, out) bind(C, name="juxmem_search")
      import :: c_int32_t, c_ptr
      type(c_ptr), value :: ctx, pattern, shape, keys, values
      integer(c_int32_t), value :: elem_type, ndims, nattrs
      type(c_ptr) :: out
    end function
    integer(c_int32_t) function c_names_count(names, count) bind(C, name="juxmem_names_count")
      import :: c_int32_t, c_ptr, c_size_t
      type(c_ptr), value :: names
      integer(c_size_t) :: count
    end function
    integer(c_int32_t) function c_names_get(names, i, name) bind(C, name="juxmem_names_get")
      import :: c_int32_t, c_ptr, c_size_t
      type(c_ptr), value :: names
      integer(c_size_t), value :: i
      type(c_ptr) :: name
    end function
    subroutine c_names_free(names) bind(C, name="juxmem_names_free")
      import :: c_ptr
      type(c_ptr), value :: names
    end subroutine
    function c_strlen(s) bind(C, name="strlen") result(n)
      import :: c_ptr, c_size_t
      type(c_ptr), value :: s
      integer(c_size_t) :: n
    end function
  end interface

contains

  ! A Fortran string as a NUL-terminated C string.
  pure function c_string(s) result(c)
    character(len=*), intent(in) :: s
    character(kind=c_char, len=len_trim(s) + 1) :: c
    c = trim(s) // c_null_char
  end function

  ! Reverses a list (Fortran order <-> C order).
  pure function reversed64(x) result(y)
    integer(c_int64_t), intent(in) :: x(:)
    integer(c_int64_t) :: y(size(x))
    y = x(size(x):1:-1)
  end function

  ! The C string at p, as a Fortran string.
  function f_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function

  !> The message of this thread's last failure.
  function juxmem_error_message() result(msg)
    character(len=:), allocatable :: msg
    msg = f_string(c_last_error_message())
  end function

  !> Joins the federation for the processes of comm (an MPI communicator handle).
  subroutine juxmem_init(comm, ctx, ierr)
    integer, intent(in) :: comm
    type(juxmem_context), intent(out) :: ctx
    integer, intent(out) :: ierr
    ierr = int(c_init_f(int(comm, c_int), ctx%ptr))
  end subroutine

  !> Leaves the federation (collective) and frees the context.
  subroutine juxmem_finalize(ctx, ierr)
    type(juxmem_context), intent(inout) :: ctx
    integer, intent(out) :: ierr
    ierr = int(c_finalize(ctx%ptr))
    call c_context_free(ctx%ptr)
    ctx%ptr = c_null_ptr
  end subroutine

  !> A layout of size(shape) dimensions, Fortran order: shape(i) indices along dimension i,
  !> distributed as kinds(i) (JUXMEM_BLOCK, JUXMEM_CYCLIC, JUXMEM_BLOCK_CYCLIC with block size
  !> block_sizes(i)) over grid(i) processes.
  subroutine juxmem_layout_new(shape, kinds, grid, layout, ierr, block_sizes)
    integer(c_int64_t), intent(in) :: shape(:), grid(:)
    integer, intent(in) :: kinds(:)
    type(juxmem_layout), intent(out) :: layout
    integer, intent(out) :: ierr
    integer(c_int64_t), intent(in), optional :: block_sizes(:)
    integer(c_int64_t) :: blocks(size(shape))
    integer(c_int32_t) :: ckinds(size(shape))
    integer :: n
    n = size(shape)
    if (size(kinds) /= n .or. size(grid) /= n) then
      ierr = JUXMEM_E_DIMENSION_MISMATCH
      return
    end if
    blocks = 1
    if (present(block_sizes)) blocks = block_sizes
    ckinds = int(kinds(n:1:-1), c_int32_t)
    ierr = int(c_layout_new(int(n, c_int32_t), reversed64(shape), ckinds, reversed64(blocks), &
      reversed64(grid), layout%ptr))
  end subroutine

  !> Frees a layout.
  subroutine juxmem_layout_free(layout)
    type(juxmem_layout), intent(inout) :: layout
    call c_layout_free(layout%ptr)
    layout%ptr = c_null_ptr
  end subroutine

  !> Creates array name of element type elem stored in layout (collective). Optional:
  !> redundancy (clusters x providers_per_cluster), replicate_to (comma-separated clusters),
  !> max_versions, drop_oldest, homes_on_daemons, readers (to wait for before they open it).
  subroutine juxmem_array_create(ctx, name, elem, layout, array, ierr, clusters, &
      providers_per_cluster, replicate_to, max_versions, drop_oldest, homes_on_daemons, readers)
    type(juxmem_context), intent(in) :: ctx
    character(len=*), intent(in) :: name
    integer, intent(in) :: elem
    type(juxmem_layout), intent(in) :: layout
    type(juxmem_array), intent(out) :: array
    integer, intent(out) :: ierr
    integer, intent(in), optional :: clusters, providers_per_cluster, max_versions, readers
    character(len=*), intent(in), optional :: replicate_to
    logical, intent(in), optional :: drop_oldest, homes_on_daemons
    type(c_options) :: opts
    character(kind=c_char, len=:), allocatable, target :: rep
    ierr = int(c_options_default(opts))
    if (present(clusters)) opts%clusters = int(clusters, c_int32_t)
    if (present(providers_per_cluster)) opts%providers_per_cluster = int(providers_per_cluster, c_int32_t)
    if (present(max_versions)) opts%max_versions = int(max_versions, c_int32_t)
    if (present(readers)) opts%readers = int(readers, c_int32_t)
    if (present(drop_oldest)) then
      if (drop_oldest) opts%on_full = int(JUXMEM_FULL_DROP_OLDEST, c_int32_t)
    end if
    if (present(homes_on_daemons)) then
      if (homes_on_daemons) opts%homes_on_daemons = 1
    end if
    if (present(replicate_to)) then
      rep = c_string(replicate_to)
      opts%replicate_to = c_loc(rep)
    end if
    ierr = int(c_array_create(ctx%ptr, c_string(name), int(elem, c_int32_t), layout%ptr, opts, &
      array%ptr))
    if (ierr == JUXMEM_OK) array%ndims = ndims_of(layout)
  end subroutine

  !> Restores the checkpoint in directory dir as a new array name of type elem in layout, any
  !> layout of the checkpoint's shape, with the default options (collective; see juxmem_restore
  !> in juxmem.h). Version 1 of the new array holds the checkpointed data, released.
  subroutine juxmem_restore(ctx, dir, name, elem, layout, array, ierr)
    type(juxmem_context), intent(in) :: ctx
    character(len=*), intent(in) :: dir, name
    integer, intent(in) :: elem
    type(juxmem_layout), intent(in) :: layout
    type(juxmem_array), intent(out) :: array
    integer, intent(out) :: ierr
    ierr = int(c_restore(ctx%ptr, c_string(dir), c_string(name), int(elem, c_int32_t), &
      layout%ptr, c_null_ptr, array%ptr))
    if (ierr == JUXMEM_OK) array%ndims = ndims_of(layout)
  end subroutine

  !> Creates the namespace name (arrays are then created under it as "name/..."); one process
  !> (see juxmem_namespace_create in juxmem.h).
  subroutine juxmem_namespace_create(ctx, name, ierr)
    type(juxmem_context), intent(in) :: ctx
    character(len=*), intent(in) :: name
    integer, intent(out) :: ierr
    ierr = int(c_namespace_create(ctx%ptr, c_string(name)))
  end subroutine

  !> Destroys the namespace name with everything under it, in every cluster; a namespace
  !> holding anything needs confirm = .true. (JUXMEM_E_BUSY otherwise, nothing changed). One
  !> process.
  subroutine juxmem_namespace_destroy(ctx, name, confirm, ierr)
    type(juxmem_context), intent(in) :: ctx
    character(len=*), intent(in) :: name
    logical, intent(in) :: confirm
    integer, intent(out) :: ierr
    integer(c_int) :: c
    c = 0
    if (confirm) c = 1
    ierr = int(c_namespace_destroy(ctx%ptr, c_string(name), c))
  end subroutine

  !> Writes the latest released version of every array under the namespace name to the
  !> directory dir (collective; see juxmem_namespace_checkpoint in juxmem.h).
  subroutine juxmem_namespace_checkpoint(ctx, name, dir, ierr)
    type(juxmem_context), intent(in) :: ctx
    character(len=*), intent(in) :: name, dir
    integer, intent(out) :: ierr
    ierr = int(c_namespace_checkpoint(ctx%ptr, c_string(name), c_string(dir)))
  end subroutine

  !> Restores the namespace checkpoint in dir as the new namespace name (collective; never a
  !> partial restore: see juxmem_namespace_restore in juxmem.h).
  subroutine juxmem_namespace_restore(ctx, dir, name, ierr)
    type(juxmem_context), intent(in) :: ctx
    character(len=*), intent(in) :: dir, name
    integer, intent(out) :: ierr
    ierr = int(c_namespace_restore(ctx%ptr, c_string(dir), c_string(name), c_null_ptr))
  end subroutine

  !> Sets attribute key to value (user metadata: units, forecast cycle, model...; found by
  !> juxmem_search), under a write acquire (collective); it takes effect at once. Trailing
  !> blanks of key and value are not part of them.
  subroutine juxmem_array_set_attribute(array, key, value, ierr)
    type(juxmem_array), intent(in) :: array
    character(len=*), intent(in) :: key, value
    integer, intent(out) :: ierr
    ierr = int(c_array_set_attribute(array%ptr, c_string(key), c_string(value)))
  end subroutine

  !> The names of the arrays of the whole federation matching every condition given, sorted:
  !> the name pattern (as juxmem_list in juxmem.h: '*' matches any run of characters), the
  !> element type elem (a JUXMEM_TYPE_*), the shape (Fortran order) and the attributes
  !> keys(i) = values(i) (each array must carry all of them; trailing blanks trimmed). names
  !> is allocated to the matches, each blank-padded (a name has at most JUXMEM_MAX_NAME
  !> characters).
  subroutine juxmem_search(ctx, names, ierr, pattern, elem, shape, keys, values)
    type(juxmem_context), intent(in) :: ctx
    character(len=JUXMEM_MAX_NAME), allocatable, intent(out) :: names(:)
    integer, intent(out) :: ierr
    character(len=*), intent(in), optional :: pattern
    integer, intent(in), optional :: elem
    integer(c_int64_t), intent(in), optional :: shape(:)
    character(len=*), intent(in), optional :: keys(:), values(:)
    character(kind=c_char, len=:), allocatable, target :: pat
    ! Longer than any valid key or value (64 and 1024 bytes): a longer one is refused here.
    character(kind=c_char, len=1026), allocatable, target :: kbuf(:), vbuf(:)
    integer(c_int64_t), allocatable, target :: cshape(:)
    type(c_ptr), allocatable, target :: kp(:), vp(:)
    type(c_ptr) :: ppat, pshape, pkeys, pvalues, list, p
    integer(c_int32_t) :: ctype, nd, na
    integer(c_size_t) :: count, i
    allocate(names(0))
    ppat = c_null_ptr
    pshape = c_null_ptr
    pkeys = c_null_ptr
    pvalues = c_null_ptr
    ctype = 0
    nd = 0
    na = 0
    if (present(pattern)) then
      pat = c_string(pattern)
      ppat = c_loc(pat)
    end if
    if (present(elem)) ctype = int(elem, c_int32_t)
    if (present(shape)) then
      cshape = reversed64(shape)
      nd = int(size(shape), c_int32_t)
      if (nd > 0) pshape = c_loc(cshape)
    end if
    if (present(keys) .neqv. present(values)) then
      ierr = JUXMEM_E_INVALID_ARGUMENT
      return
    end if
    if (present(keys)) then
      if (size(keys) /= size(values)) then
        ierr = JUXMEM_E_INVALID_ARGUMENT
        return
      end if
      na = int(size(keys), c_int32_t)
      allocate(kbuf(na), vbuf(na), kp(na), vp(na))
      do i = 1, int(na, c_size_t)
        if (len_trim(keys(i)) > 1024 .or. len_trim(values(i)) > 1024) then
          ierr = JUXMEM_E_INVALID_ARGUMENT
          return
        end if
        kbuf(i) = trim(keys(i)) // c_null_char
        vbuf(i) = trim(values(i)) // c_null_char
        kp(i) = c_loc(kbuf(i))
        vp(i) = c_loc(vbuf(i))
      end do
      if (na > 0) then
        pkeys = c_loc(kp)
        pvalues = c_loc(vp)
      end if
    end if
    list = c_null_ptr
    ierr = int(c_search(ctx%ptr, ppat, ctype, nd, pshape, na, pkeys, pvalues, list))
    if (ierr /= JUXMEM_OK) return
    ierr = int(c_names_count(list, count))
    if (ierr /= JUXMEM_OK) then
      call c_names_free(list)
      return
    end if
    deallocate(names)
    allocate(names(count))
    do i = 0, count - 1
      ierr = int(c_names_get(list, i, p))
      if (ierr /= JUXMEM_OK) exit
      names(i + 1) = f_string(p)
    end do
    call c_names_free(list)
  end subroutine

  !> Writes the version array reads (after juxmem_array_acquire_read) to directory dir as a
  !> checkpoint (collective); version receives the version written.
  subroutine juxmem_array_checkpoint(array, dir, version, ierr)
    type(juxmem_array), intent(in) :: array
    character(len=*), intent(in) :: dir
    integer(c_int64_t), intent(out) :: version
    integer, intent(out) :: ierr
    version = 0
    ierr = int(c_array_checkpoint(array%ptr, c_string(dir), version))
  end subroutine

  !> Opens array name with this group's layout (collective), waiting up to timeout seconds
  !> (optional; default: fail at once) for it to be created.
  subroutine juxmem_array_open(ctx, name, elem, layout, array, ierr, timeout)
    type(juxmem_context), intent(in) :: ctx
    character(len=*), intent(in) :: name
    integer, intent(in) :: elem
    type(juxmem_layout), intent(in) :: layout
    type(juxmem_array), intent(out) :: array
    integer, intent(out) :: ierr
    real(c_double), intent(in), optional :: timeout
    real(c_double) :: t
    t = 0.0_c_double
    if (present(timeout)) t = timeout
    ierr = int(c_array_open(ctx%ptr, c_string(name), int(elem, c_int32_t), layout%ptr, t, array%ptr))
    if (ierr == JUXMEM_OK) array%ndims = ndims_of(layout)
  end subroutine

  integer function ndims_of(layout)
    type(juxmem_layout), intent(in) :: layout
    interface
      integer(c_int32_t) function c_layout_ndims(l, n) bind(C, name="juxmem_layout_ndims")
        import :: c_int32_t, c_ptr
        type(c_ptr), value :: l
        integer(c_int32_t) :: n
      end function
    end interface
    integer(c_int32_t) :: n
    n = 0
    if (c_layout_ndims(layout%ptr, n) /= 0) n = 0
    ndims_of = int(n)
  end function

  !> Closes an array handle.
  subroutine juxmem_array_close(array)
    type(juxmem_array), intent(inout) :: array
    call c_array_close(array%ptr)
    array%ptr = c_null_ptr
  end subroutine

  !> Destroys the array (collective, as GA_Destroy) and frees the handle: the name is free
  !> again, every copy dropped. JUXMEM_E_BUSY while another process uses it.
  subroutine juxmem_array_destroy(array, ierr)
    type(juxmem_array), intent(inout) :: array
    integer, intent(out) :: ierr
    ierr = int(c_array_destroy(array%ptr))
    array%ptr = c_null_ptr
  end subroutine

  !> Takes the array's write lock (collective); optional timeout in seconds.
  subroutine juxmem_array_acquire(array, ierr, timeout)
    type(juxmem_array), intent(in) :: array
    integer, intent(out) :: ierr
    real(c_double), intent(in), optional :: timeout
    real(c_double) :: t
    t = 0.0_c_double
    if (present(timeout)) t = timeout
    ierr = int(c_array_acquire(array%ptr, t))
  end subroutine

  !> Takes the write lock (collective) for a writer that overwrites its whole local part: the
  !> latest version is not loaded; contents unspecified until written. Optional timeout (s).
  subroutine juxmem_array_acquire_overwrite(array, ierr, timeout)
    type(juxmem_array), intent(in) :: array
    integer, intent(out) :: ierr
    real(c_double), intent(in), optional :: timeout
    real(c_double) :: t
    t = 0.0_c_double
    if (present(timeout)) t = timeout
    ierr = int(c_array_acquire_overwrite(array%ptr, t))
  end subroutine

  !> Publishes the local parts as a new version (collective); optional version out.
  subroutine juxmem_array_release(array, ierr, version)
    type(juxmem_array), intent(in) :: array
    integer, intent(out) :: ierr
    integer(c_int64_t), intent(out), optional :: version
    integer(c_int64_t) :: v
    v = 0
    ierr = int(c_array_release(array%ptr, v))
    if (present(version)) version = v
  end subroutine

  !> Waits for a version (mode JUXMEM_LATEST, JUXMEM_AT_LEAST or JUXMEM_EXACTLY) and holds it
  !> (collective); optional timeout in seconds and version read.
  subroutine juxmem_array_acquire_read(array, mode, version, ierr, timeout, version_out)
    type(juxmem_array), intent(in) :: array
    integer, intent(in) :: mode
    integer(c_int64_t), intent(in) :: version
    integer, intent(out) :: ierr
    real(c_double), intent(in), optional :: timeout
    integer(c_int64_t), intent(out), optional :: version_out
    real(c_double) :: t
    integer(c_int64_t) :: v
    t = 0.0_c_double
    if (present(timeout)) t = timeout
    v = 0
    ierr = int(c_array_acquire_read(array%ptr, int(mode, c_int32_t), version, t, v))
    if (present(version_out)) version_out = v
  end subroutine

  !> Starts juxmem_array_acquire_read and returns at once (collective): each rank waits for the
  !> version and fetches its local part while the caller computes. Complete it with
  !> juxmem_wait on every rank (collective); juxmem_test only tells whether this rank's part
  !> has arrived. With more than one rank the mode must be JUXMEM_EXACTLY.
  subroutine juxmem_array_acquire_read_nb(array, mode, version, request, ierr, timeout)
    type(juxmem_array), intent(in) :: array
    integer, intent(in) :: mode
    integer(c_int64_t), intent(in) :: version
    type(juxmem_request), intent(inout) :: request
    integer, intent(out) :: ierr
    real(c_double), intent(in), optional :: timeout
    real(c_double) :: t
    t = 0.0_c_double
    if (present(timeout)) t = timeout
    ierr = int(c_array_acquire_read_nb(array%ptr, int(mode, c_int32_t), version, t, request%ptr))
  end subroutine

  !> Ends a read (collective).
  subroutine juxmem_array_release_read(array, ierr)
    type(juxmem_array), intent(in) :: array
    integer, intent(out) :: ierr
    ierr = int(c_array_release_read(array%ptr))
  end subroutine

  ! Local part access: a Fortran pointer over the local part (Fortran order) and, optionally,
  ! the global 1-based index of its first element.
  subroutine local_ptr(array, writable, data, shape, first, ierr)
    type(juxmem_array), intent(in) :: array
    logical, intent(in) :: writable
    type(c_ptr), intent(out) :: data
    integer(c_int64_t), intent(out) :: shape(:), first(:)
    integer, intent(out) :: ierr
    integer(c_int64_t) :: s(size(shape)), f(size(shape))
    if (array%ndims /= size(shape)) then
      ierr = JUXMEM_E_DIMENSION_MISMATCH
      return
    end if
    if (writable) then
      ierr = int(c_array_local(array%ptr, data, s, f))
    else
      ierr = int(c_array_local_ro(array%ptr, data, s, f))
    end if
    shape = reversed64(s)
    first = reversed64(f) + 1
  end subroutine

  subroutine local_read_r8_1d(array, field, ierr, first)
    type(juxmem_array), intent(in) :: array
    real(c_double), pointer, intent(out) :: field(:)
    integer, intent(out) :: ierr
    integer(c_int64_t), intent(out), optional :: first(1)
    type(c_ptr) :: p
    integer(c_int64_t) :: s(1), f(1)
    call local_ptr(array, .false., p, s, f, ierr)
    if (ierr /= JUXMEM_OK) return
    call c_f_pointer(p, field, s)
    if (present(first)) first = f
  end subroutine

  subroutine local_read_r8_2d(array, field, ierr, first)
    type(juxmem_array), intent(in) :: array
    real(c_double), pointer, intent(out) :: field(:, :)
    integer, intent(out) :: ierr
    integer(c_int64_t), intent(out), optional :: first(2)
    type(c_ptr) :: p
    integer(c_int64_t) :: s(2), f(2)
    call local_ptr(array, .false., p, s, f, ierr)
    if (ierr /= JUXMEM_OK) return
    call c_f_pointer(p, field, s)
    if (present(first)) first = f
  end subroutine

  subroutine local_write_r8_1d(array, field, ierr, first)
    type(juxmem_array), intent(in) :: array
    real(c_double), pointer, intent(out) :: field(:)
    integer, intent(out) :: ierr
    integer(c_int64_t), intent(out), optional :: first(1)
    type(c_ptr) :: p
    integer(c_int64_t) :: s(1), f(1)
    call local_ptr(array, .true., p, s, f, ierr)
    if (ierr /= JUXMEM_OK) return
    call c_f_pointer(p, field, s)
    if (present(first)) first = f
  end subroutine

  subroutine local_write_r8_2d(array, field, ierr, first)
    type(juxmem_array), intent(in) :: array
    real(c_double), pointer, intent(out) :: field(:, :)
    integer, intent(out) :: ierr
    integer(c_int64_t), intent(out), optional :: first(2)
    type(c_ptr) :: p
    integer(c_int64_t) :: s(2), f(2)
    call local_ptr(array, .true., p, s, f, ierr)
    if (ierr /= JUXMEM_OK) return
    call c_f_pointer(p, field, s)
    if (present(first)) first = f
  end subroutine

  ! Regions [lo, hi] (1-based, inclusive, Fortran order) to C corners.
  subroutine corners(lo, hi, clo, chi)
    integer(c_int64_t), intent(in) :: lo(:), hi(:)
    integer(c_int64_t), intent(out) :: clo(size(lo)), chi(size(hi))
    clo = reversed64(lo) - 1
    chi = reversed64(hi) - 1
  end subroutine

  subroutine get_r8_1d(array, lo, hi, buf, ierr)
    type(juxmem_array), intent(in) :: array
    integer(c_int64_t), intent(in) :: lo(1), hi(1)
    real(c_double), intent(inout), contiguous, target :: buf(:)
    integer, intent(out) :: ierr
    integer(c_int64_t) :: clo(1), chi(1), ld(1)
    call corners(lo, hi, clo, chi)
    ld = 0
    ierr = int(c_array_get(array%ptr, clo, chi, c_loc(buf), ld))
  end subroutine

  subroutine get_r8_2d(array, lo, hi, buf, ierr)
    type(juxmem_array), intent(in) :: array
    integer(c_int64_t), intent(in) :: lo(2), hi(2)
    real(c_double), intent(inout), contiguous, target :: buf(:, :)
    integer, intent(out) :: ierr
    integer(c_int64_t) :: clo(2), chi(2), ld(1)
    call corners(lo, hi, clo, chi)
    ld(1) = size(buf, 1, kind=c_int64_t)
    ierr = int(c_array_get(array%ptr, clo, chi, c_loc(buf), ld))
  end subroutine

  subroutine get_relaxed_r8_1d(array, lo, hi, buf, max_staleness, version, ierr)
    type(juxmem_array), intent(in) :: array
    integer(c_int64_t), intent(in) :: lo(1), hi(1)
    real(c_double), intent(inout), contiguous, target :: buf(:)
    real(c_double), intent(in) :: max_staleness
    integer(c_int64_t), intent(out) :: version
    integer, intent(out) :: ierr
    integer(c_int64_t) :: clo(1), chi(1), ld(1)
    call corners(lo, hi, clo, chi)
    ld = 0
    version = 0
    ierr = int(c_array_get_relaxed(array%ptr, clo, chi, c_loc(buf), ld, max_staleness, version))
  end subroutine

  subroutine get_relaxed_r8_2d(array, lo, hi, buf, max_staleness, version, ierr)
    type(juxmem_array), intent(in) :: array
    integer(c_int64_t), intent(in) :: lo(2), hi(2)
    real(c_double), intent(inout), contiguous, target :: buf(:, :)
    real(c_double), intent(in) :: max_staleness
    integer(c_int64_t), intent(out) :: version
    integer, intent(out) :: ierr
    integer(c_int64_t) :: clo(2), chi(2), ld(1)
    call corners(lo, hi, clo, chi)
    ld(1) = size(buf, 1, kind=c_int64_t)
    version = 0
    ierr = int(c_array_get_relaxed(array%ptr, clo, chi, c_loc(buf), ld, max_staleness, version))
  end subroutine

  subroutine put_r8_1d(array, lo, hi, buf, ierr)
    type(juxmem_array), intent(in) :: array
    integer(c_int64_t), intent(in) :: lo(1), hi(1)
    real(c_double), intent(in), contiguous, target :: buf(:)
    integer, intent(out) :: ierr
    integer(c_int64_t) :: clo(1), chi(1), ld(1)
    call corners(lo, hi, clo, chi)
    ld = 0
    ierr = int(c_array_put(array%ptr, clo, chi, c_loc(buf), ld))
  end subroutine

  subroutine put_r8_2d(array, lo, hi, buf, ierr)
    type(juxmem_array), intent(in) :: array
    integer(c_int64_t), intent(in) :: lo(2), hi(2)
    real(c_double), intent(in), contiguous, target :: buf(:, :)
    integer, intent(out) :: ierr
    integer(c_int64_t) :: clo(2), chi(2), ld(1)
    call corners(lo, hi, clo, chi)
    ld(1) = size(buf, 1, kind=c_int64_t)
    ierr = int(c_array_put(array%ptr, clo, chi, c_loc(buf), ld))
  end subroutine

  subroutine get_nb_r8_1d(array, lo, hi, buf, request, ierr)
    type(juxmem_array), intent(in) :: array
    integer(c_int64_t), intent(in) :: lo(1), hi(1)
    real(c_double), intent(inout), target, asynchronous :: buf(:)
    type(juxmem_request), intent(inout) :: request
    integer, intent(out) :: ierr
    integer(c_int64_t) :: clo(1), chi(1), ld(1)
    call corners(lo, hi, clo, chi)
    ld = 0
    ! The transfer needs the buffer itself: a copy of a non-contiguous section would be
    ! freed on return while the transfer still uses it.
    if (.not. is_contiguous(buf)) then
      ierr = JUXMEM_E_INVALID_ARGUMENT
      return
    end if
    ierr = int(c_array_get_nb(array%ptr, clo, chi, c_loc(buf), ld, request%ptr))
  end subroutine

  subroutine get_nb_r8_2d(array, lo, hi, buf, request, ierr)
    type(juxmem_array), intent(in) :: array
    integer(c_int64_t), intent(in) :: lo(2), hi(2)
    real(c_double), intent(inout), target, asynchronous :: buf(:, :)
    type(juxmem_request), intent(inout) :: request
    integer, intent(out) :: ierr
    integer(c_int64_t) :: clo(2), chi(2), ld(1)
    call corners(lo, hi, clo, chi)
    ld(1) = size(buf, 1, kind=c_int64_t)
    ! The transfer needs the buffer itself: a copy of a non-contiguous section would be
    ! freed on return while the transfer still uses it.
    if (.not. is_contiguous(buf)) then
      ierr = JUXMEM_E_INVALID_ARGUMENT
      return
    end if
    ierr = int(c_array_get_nb(array%ptr, clo, chi, c_loc(buf), ld, request%ptr))
  end subroutine

  subroutine put_nb_r8_1d(array, lo, hi, buf, request, ierr)
    type(juxmem_array), intent(in) :: array
    integer(c_int64_t), intent(in) :: lo(1), hi(1)
    real(c_double), intent(in), target, asynchronous :: buf(:)
    type(juxmem_request), intent(inout) :: request
    integer, intent(out) :: ierr
    integer(c_int64_t) :: clo(1), chi(1), ld(1)
    call corners(lo, hi, clo, chi)
    ld = 0
    ! The transfer needs the buffer itself: a copy of a non-contiguous section would be
    ! freed on return while the transfer still uses it.
    if (.not. is_contiguous(buf)) then
      ierr = JUXMEM_E_INVALID_ARGUMENT
      return
    end if
    ierr = int(c_array_put_nb(array%ptr, clo, chi, c_loc(buf), ld, request%ptr))
  end subroutine

  subroutine put_nb_r8_2d(array, lo, hi, buf, request, ierr)
    type(juxmem_array), intent(in) :: array
    integer(c_int64_t), intent(in) :: lo(2), hi(2)
    real(c_double), intent(in), target, asynchronous :: buf(:, :)
    type(juxmem_request), intent(inout) :: request
    integer, intent(out) :: ierr
    integer(c_int64_t) :: clo(2), chi(2), ld(1)
    call corners(lo, hi, clo, chi)
    ld(1) = size(buf, 1, kind=c_int64_t)
    ! The transfer needs the buffer itself: a copy of a non-contiguous section would be
    ! freed on return while the transfer still uses it.
    if (.not. is_contiguous(buf)) then
      ierr = JUXMEM_E_INVALID_ARGUMENT
      return
    end if
    ierr = int(c_array_put_nb(array%ptr, clo, chi, c_loc(buf), ld, request%ptr))
  end subroutine

  !> Waits for `request` to end (at most `timeout` seconds; absent or <= 0: until it ends,
  !> every transfer being bounded by the federation's timeout). Once it has ended, ierr is its
  !> status and the request is freed (null). Still under way at the timeout: JUXMEM_E_TIMEOUT
  !> with the request unchanged (wait again). A null request gives JUXMEM_OK.
  subroutine juxmem_wait(request, ierr, timeout)
    type(juxmem_request), intent(inout) :: request
    integer, intent(out) :: ierr
    real(c_double), intent(in), optional :: timeout
    real(c_double) :: t
    t = 0
    if (present(timeout)) t = timeout
    ierr = int(c_wait(request%ptr, t))
  end subroutine

  !> Whether `request` has ended: if so, done is .true., ierr its status, and the request is
  !> freed (null); otherwise done is .false. and ierr JUXMEM_OK. An acquire_read request is
  !> only looked at: done says whether this rank's part arrived; juxmem_wait completes it.
  subroutine juxmem_test(request, done, ierr)
    type(juxmem_request), intent(inout) :: request
    logical, intent(out) :: done
    integer, intent(out) :: ierr
    integer(c_int32_t) :: d
    d = 0
    ierr = int(c_test(request%ptr, d))
    done = d /= 0
  end subroutine

end module juxmem
