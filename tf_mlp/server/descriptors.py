"""Protobuf message classes built at runtime from tables of fields, for .proto files no installed package compiles.

TensorFlow Serving's BatchingParameters and MonitoringConfig (config_files)
and TensorFlow's ProfilerService messages (grpc/profiler) ship no Python
classes. Each is described here by a table copied field for field from its
upstream .proto (names, numbers, types), added to a private descriptor pool,
so they can never clash with generated classes a later package might bring,
and turned into classes by protobuf's own message factory.

    FIELD = descriptor_pb2.FieldDescriptorProto
    message_classes("tensorflow", [("TerminateRequest", [("session_id", 1, FIELD.TYPE_STRING, OPTIONAL, None)])],
                    file_name="tf_mlp/profiler_service.proto")
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

FIELD = descriptor_pb2.FieldDescriptorProto
OPTIONAL, REPEATED = FIELD.LABEL_OPTIONAL, FIELD.LABEL_REPEATED


def message_classes(package: str, messages, *, file_name: str, dependencies=()) -> dict:
    """name -> message class for messages ((name, ((field, number, type, label, message type or None), ...)), ...).

    `dependencies` are the FileDescriptors (e.g. wrappers_pb2.DESCRIPTOR)
    whose messages the fields name as `.package.Message`.
    """
    pool = descriptor_pool.DescriptorPool()
    for dependency in dependencies:
        dependency_proto = descriptor_pb2.FileDescriptorProto()
        dependency.CopyToProto(dependency_proto)
        pool.Add(dependency_proto)
    file_proto = descriptor_pb2.FileDescriptorProto(name=file_name, package=package, syntax="proto3",
                                                    dependency=[dependency.name for dependency in dependencies])
    for name, fields in messages:
        message = file_proto.message_type.add(name=name)
        for field_name, number, field_type, label, type_name in fields:
            field = message.field.add(name=field_name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = type_name
    pool.Add(file_proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name, _ in messages}
