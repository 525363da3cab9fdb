# Install rules and the CMake package: find_package(dtrain) gives dtrain::core ... dtrain::serve.
include(CMakePackageConfigHelpers)
set(DTRAIN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dtrain)

set(_dtrain_libs dtrain_core dtrain_optim dtrain_comm dtrain_data dtrain_export dtrain_inference dtrain_launch dtrain_serve)
# Each library's public headers (its FILE_SET HEADERS) go to include/dtrain/<folder>/.
install(TARGETS ${_dtrain_libs} EXPORT dtrainTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dtrain
  FILE_SET generated_headers DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dtrain
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dtrain)
foreach(exe dtrain dtrain-serve)
  if(TARGET ${exe})
    install(TARGETS ${exe} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()
install(EXPORT dtrainTargets NAMESPACE dtrain:: DESTINATION ${DTRAIN_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dtrainConfig.cmake.in
  ${PROJECT_BINARY_DIR}/dtrainConfig.cmake INSTALL_DESTINATION ${DTRAIN_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dtrainConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dtrainConfig.cmake ${PROJECT_BINARY_DIR}/dtrainConfigVersion.cmake
  DESTINATION ${DTRAIN_CMAKE_DIR})
