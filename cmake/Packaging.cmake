# The Debian package (scripts/package.sh): what `cmake --install` puts where on a host, and CPack's DEB
# generator. CPack rather than dpkg-buildpackage: the package is made from the build the tests already
# ran (no second compile), and its runtime dependencies are still Debian's own computation
# (CPACK_DEBIAN_PACKAGE_SHLIBDEPS runs dpkg-shlibdeps on the binary and the module).
#
# Paths are a host's, not the prefix's: the unit in /lib/systemd/system, the config in /etc/oomguard.
# The man pages come from the CLI's own help (scripts/manpages.py, target `manpages`).

find_package(Python3 COMPONENTS Interpreter)
set(OOMGUARD_MAN_DIR ${CMAKE_BINARY_DIR}/man)
set(OOMGUARD_MAN_PAGES oomguard oomguard-top oomguard-explain oomguard-explain-oom oomguard-doctor oomguard-run
                       oomguard-health oomguard-check-config)
set(man_outputs "")
foreach(page IN LISTS OOMGUARD_MAN_PAGES)
  list(APPEND man_outputs ${OOMGUARD_MAN_DIR}/${page}.1.gz)
endforeach()
if(Python3_Interpreter_FOUND)
  add_custom_command(
    OUTPUT ${man_outputs}
    COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/manpages.py $<TARGET_FILE:oomguard> ${OOMGUARD_MAN_DIR}
    DEPENDS oomguard ${PROJECT_SOURCE_DIR}/scripts/manpages.py
    COMMENT "man pages from oomguard --help"
    VERBATIM)
  add_custom_target(manpages DEPENDS ${man_outputs})
endif()
# A page the CLI does not have any more fails the install, as a missing file should.
install(FILES ${man_outputs} DESTINATION share/man/man1)

add_custom_command(
  OUTPUT ${CMAKE_BINARY_DIR}/packaging/changelog.gz
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/packaging
  COMMAND gzip -9nc ${PROJECT_SOURCE_DIR}/packaging/changelog > ${CMAKE_BINARY_DIR}/packaging/changelog.gz
  DEPENDS ${PROJECT_SOURCE_DIR}/packaging/changelog)
add_custom_target(package_files DEPENDS ${CMAKE_BINARY_DIR}/packaging/changelog.gz)
if(TARGET manpages)
  add_dependencies(package_files manpages)
endif()

install(FILES packaging/oomguard.service DESTINATION /lib/systemd/system)
install(FILES examples/oomguard.json DESTINATION /etc/oomguard RENAME config.json)
install(FILES examples/act-recommended.json DESTINATION /etc/oomguard)
install(FILES packaging/copyright packaging/act.conf docs/service.md ${CMAKE_BINARY_DIR}/packaging/changelog.gz
        DESTINATION share/doc/oomguard)
install(DIRECTORY DESTINATION /var/lib/oomguard
        DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME oomguard)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)  # the prefix of the relative destinations under CPACK_SET_DESTDIR
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_SOURCE_DIR}/dist)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # oomguard_<version>_<arch>.deb
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "oomguard developers <oomguard@example.org>")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Beyond the computed libraries: the maintainer scripts call deb-systemd-helper and deb-systemd-invoke,
# and the unit's ExecReload /bin/kill.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "init-system-helpers (>= 1.52), procps")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "cgroup-v2-aware OOM guardian that acts before the kernel's OOM killer")
# The synopsis is the summary above; CPack indents these lines and writes the empty one as " .".
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "oomguard computes the kernel's own OOM badness model for the host and every
cgroup with a memory.max, so it always knows whom the kernel would kill next,
and checks that prediction against the kernel's OOM reports. In mode act it
applies per-cgroup protections and a policy (kill-worst, kill-allocating,
panic) before the kernel has to, and never kills a second process for one
OOM. Metrics for Prometheus, JSON-lines logs, a hardened systemd service.

As installed it only observes; /etc/oomguard/act-recommended.json and the
drop-in /usr/share/doc/oomguard/act.conf turn on acting.")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/postinst ${PROJECT_SOURCE_DIR}/packaging/prerm
    ${PROJECT_SOURCE_DIR}/packaging/postrm ${PROJECT_SOURCE_DIR}/packaging/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_SET_DESTDIR ON)  # the absolute destinations above (/etc, /lib, /var) land in the package as is
include(CPack)
