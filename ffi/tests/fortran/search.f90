! Attributes and search from Fortran (tests/c_abi.rs runs it in a federation of its own, on one
! rank): two arrays with attributes, then searches by pattern, type, shape and attributes; a
! search with keys but no values is refused with JUXMEM_E_INVALID_ARGUMENT. Prints
! "SEARCH ok failures=0" when every check held.
program search
  use, intrinsic :: iso_c_binding
  use mpi
  use juxmem
  implicit none
  type(juxmem_context) :: ctx
  type(juxmem_layout) :: layout
  type(juxmem_array) :: a, b
  character(len=JUXMEM_MAX_NAME), allocatable :: names(:)
  integer :: ierr, provided, failures

  failures = 0
  call MPI_Init_thread(MPI_THREAD_FUNNELED, provided, ierr)
  call juxmem_init(MPI_COMM_WORLD, ctx, ierr)
  call expect("init", ierr, JUXMEM_OK)
  call juxmem_layout_new([8_c_int64_t, 4_c_int64_t], [JUXMEM_BLOCK, JUXMEM_BLOCK], &
    [1_c_int64_t, 1_c_int64_t], layout, ierr)
  call expect("layout", ierr, JUXMEM_OK)
  call juxmem_array_create(ctx, 'fsearch/t2m', JUXMEM_TYPE_DOUBLE, layout, a, ierr)
  call expect("create t2m", ierr, JUXMEM_OK)
  call juxmem_array_create(ctx, 'fsearch/u10', JUXMEM_TYPE_DOUBLE, layout, b, ierr)
  call expect("create u10", ierr, JUXMEM_OK)

  ! Attributes are set under a write acquire.
  call juxmem_array_set_attribute(a, 'units', 'K', ierr)
  call expect("attribute without acquire", ierr, JUXMEM_E_NOT_ACQUIRED)
  call juxmem_array_acquire(a, ierr)
  call expect("acquire", ierr, JUXMEM_OK)
  call juxmem_array_set_attribute(a, 'units', 'K', ierr)
  call expect("attribute", ierr, JUXMEM_OK)
  call juxmem_array_set_attribute(a, 'bad key', 'K', ierr)
  call expect("bad attribute key", ierr, JUXMEM_E_INVALID_ARGUMENT)
  call juxmem_array_release(a, ierr)
  call expect("release", ierr, JUXMEM_OK)
  call juxmem_array_acquire(b, ierr)
  call juxmem_array_set_attribute(b, 'units', 'm/s', ierr)
  call expect("attribute u10", ierr, JUXMEM_OK)
  call juxmem_array_release(b, ierr)

  call juxmem_search(ctx, names, ierr, pattern='fsearch/*')
  call expect("search by pattern", ierr, JUXMEM_OK)
  call expect_names("search by pattern", names, ['fsearch/t2m', 'fsearch/u10'])
  call juxmem_search(ctx, names, ierr, keys=['units'], values=['K'])
  call expect("search by attribute", ierr, JUXMEM_OK)
  call expect_names("search by attribute", names, ['fsearch/t2m'])
  call juxmem_search(ctx, names, ierr, elem=JUXMEM_TYPE_DOUBLE, shape=[8_c_int64_t, 4_c_int64_t])
  call expect("search by type and shape", ierr, JUXMEM_OK)
  call expect_names("search by type and shape", names, ['fsearch/t2m', 'fsearch/u10'])
  call juxmem_search(ctx, names, ierr, shape=[4_c_int64_t, 8_c_int64_t])
  call expect("search by the transposed shape", ierr, JUXMEM_OK)
  if (size(names) /= 0) call fail("search by the transposed shape found something")
  call juxmem_search(ctx, names, ierr, keys=['units'])
  call expect("keys without values", ierr, JUXMEM_E_INVALID_ARGUMENT)

  call juxmem_array_close(a)
  call juxmem_array_close(b)
  call juxmem_layout_free(layout)
  call juxmem_finalize(ctx, ierr)
  print '(a,i0)', 'SEARCH ok failures=', failures
  call MPI_Finalize(ierr)

contains

  subroutine fail(what)
    character(len=*), intent(in) :: what
    print '(a,a)', 'FAILED: ', what
    failures = failures + 1
  end subroutine

  subroutine expect(what, got, want)
    character(len=*), intent(in) :: what
    integer, intent(in) :: got, want
    if (got /= want) then
      print '(a,a,a,i0,a,i0,a,a)', 'FAILED: ', what, ': got ', got, ', want ', want, ': ', &
        juxmem_error_message()
      failures = failures + 1
    end if
  end subroutine

  subroutine expect_names(what, got, want)
    character(len=*), intent(in) :: what
    character(len=*), intent(in) :: got(:), want(:)
    integer :: i
    if (size(got) /= size(want)) then
      print '(a,a,a,i0,a,i0)', 'FAILED: ', what, ': found ', size(got), ', want ', size(want)
      failures = failures + 1
      return
    end if
    do i = 1, size(want)
      if (trim(got(i)) /= trim(want(i))) then
        print '(a,a,a,a,a,a)', 'FAILED: ', what, ': found ', trim(got(i)), ', want ', &
          trim(want(i))
        failures = failures + 1
      end if
    end do
  end subroutine
end program search
